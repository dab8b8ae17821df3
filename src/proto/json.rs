//! Cheap pre-checks run on untrusted JSON text before it is handed to `serde_json`.

/// Returns `true` when the nesting of arrays and objects in `json` ever exceeds `max_depth`.
///
/// This is a linear scan that counts `[` and `{` (and their closing brackets) outside JSON
/// strings, honouring backslash escapes inside strings. It does not validate the JSON: it only
/// bounds how deep a later parse could recurse. A document with no brackets has depth 0, `[]`
/// has depth 1, `[{}]` depth 2.
pub fn exceeds_depth(json: &[u8], max_depth: usize) -> bool {
    let mut depth: usize = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::exceeds_depth;

    #[test]
    fn depth_counts_nesting() {
        assert!(!exceeds_depth(b"", 0));
        assert!(!exceeds_depth(b"123", 0));
        assert!(exceeds_depth(b"[]", 0));
        assert!(!exceeds_depth(b"[]", 1));
        assert!(!exceeds_depth(b"[{},{},[]]", 2));
        assert!(exceeds_depth(b"[{},{},[[]]]", 2));
        assert!(!exceeds_depth(b"[1][2][3]", 1));
    }

    #[test]
    fn brackets_in_strings_are_ignored() {
        assert!(!exceeds_depth(br#"["[[[[{{{{"]"#, 1));
        assert!(!exceeds_depth(br#"["\"[[[[", "\\"]"#, 1));
        assert!(exceeds_depth(br#"["\\", [[]]]"#, 2));
        assert!(!exceeds_depth(br#"{"a\"]]]]":"}}}}\\"}"#, 1));
    }

    #[test]
    fn deep_input_is_detected() {
        let deep = "[".repeat(1000);
        assert!(exceeds_depth(deep.as_bytes(), 64));
        assert!(!exceeds_depth(deep.as_bytes(), 1000));
        let closed = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(!exceeds_depth(closed.as_bytes(), 64));
        assert!(exceeds_depth(closed.as_bytes(), 63));
    }

    #[test]
    fn unbalanced_closers_do_not_underflow() {
        assert!(!exceeds_depth(b"]]]]}}}[", 1));
        assert!(exceeds_depth(b"]]]][[", 1));
    }
}
