//! Python objects <-> event arguments.
//!
//! Arguments cross as the wire has them ([`Args`]): JSON values plus binary attachments
//! referenced by `{"_placeholder":true,"num":N}`. Going to Python, a placeholder becomes
//! the attachment's `bytes`; coming from Python, `bytes` / `bytearray` / `memoryview`
//! become attachments, anywhere in the structure. Everything else follows `json`:
//! `None`, `bool`, `int`, `float`, `str`, `list`/`tuple`, `dict` (keys made strings).

use bytes::Bytes;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};
use serde_json::{Map, Number, Value};

use tether_core::sio::Args;

/// Deepest nesting accepted from Python (also stops reference cycles).
const MAX_DEPTH: usize = 128;

/// A JSON value as a Python object (placeholders stay dicts).
pub(crate) fn value_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    to_py(py, v, &[])
}

fn placeholder_num(o: &Map<String, Value>) -> Option<usize> {
    if o.len() == 2 && o.get("_placeholder")?.as_bool()? {
        o.get("num")?.as_u64().map(|n| n as usize)
    } else {
        None
    }
}

fn to_py<'py>(py: Python<'py>, v: &Value, bins: &[Bytes]) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for x in a {
                list.append(to_py(py, x, bins)?)?;
            }
            list.into_any()
        }
        Value::Object(o) => {
            if !bins.is_empty()
                && let Some(n) = placeholder_num(o)
                && let Some(b) = bins.get(n)
            {
                return Ok(PyBytes::new(py, b).into_any());
            }
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, to_py(py, x, bins)?)?;
            }
            d.into_any()
        }
    })
}

/// The arguments as Python objects, attachments as `bytes`.
pub(crate) fn args_to_vec<'py>(py: Python<'py>, args: &Args) -> PyResult<Vec<Bound<'py, PyAny>>> {
    args.values()
        .iter()
        .map(|v| to_py(py, v, &args.bins))
        .collect()
}

/// `prefix` followed by the arguments, as a tuple (the positional arguments of a handler).
pub(crate) fn args_tuple<'py>(
    py: Python<'py>,
    prefix: Option<Bound<'py, PyAny>>,
    args: &Args,
) -> PyResult<Bound<'py, PyTuple>> {
    let mut v = Vec::with_capacity(args.values().len() + 1);
    if let Some(p) = prefix {
        v.push(p);
    }
    for x in args.values() {
        v.push(to_py(py, x, &args.bins)?);
    }
    PyTuple::new(py, v)
}

/// What a list of arguments (an ack reply, `call`'s result) looks like in Python, the
/// python-socketio way: none → `None`, one → that value, several → a tuple.
pub(crate) fn args_result<'py>(py: Python<'py>, args: &Args) -> PyResult<Bound<'py, PyAny>> {
    match args.values().len() {
        0 => Ok(py.None().into_bound(py)),
        1 => to_py(py, &args.values()[0], &args.bins),
        _ => Ok(args_tuple(py, None, args)?.into_any()),
    }
}

/// One Python object as a JSON value; binary data is appended to `bins` and replaced by
/// its placeholder.
pub(crate) fn py_to_value(obj: &Bound<'_, PyAny>, bins: &mut Vec<Bytes>) -> PyResult<Value> {
    from_py(obj, bins, 0)
}

fn placeholder(bins: &mut Vec<Bytes>, b: Bytes) -> Value {
    let mut m = Map::with_capacity(2);
    m.insert("_placeholder".to_owned(), Value::Bool(true));
    m.insert("num".to_owned(), Value::from(bins.len()));
    bins.push(b);
    Value::Object(m)
}

fn from_py(obj: &Bound<'_, PyAny>, bins: &mut Vec<Bytes>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(
            "argument nested too deeply (or it contains itself)",
        ));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(Value::from(v));
        }
        if let Ok(v) = i.extract::<u64>() {
            return Ok(Value::from(v));
        }
        return Err(PyValueError::new_err(
            "integer out of range: JSON numbers are limited to 64 bits here",
        ));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Number::from_f64(f.value())
            .map(Value::Number)
            .unwrap_or(Value::Null));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut m = Map::with_capacity(d.len());
        for (k, v) in d.iter() {
            let key = if let Ok(s) = k.cast::<PyString>() {
                s.to_cow()?.into_owned()
            } else if k.is_none() {
                "null".to_owned()
            } else if let Ok(b) = k.cast::<PyBool>() {
                if b.is_true() { "true" } else { "false" }.to_owned()
            } else if k.is_instance_of::<PyInt>() || k.is_instance_of::<PyFloat>() {
                k.str()?.to_cow()?.into_owned()
            } else {
                return Err(PyTypeError::new_err(format!(
                    "keys must be str, int, float, bool or None, not {}",
                    k.get_type().name()?
                )));
            };
            m.insert(key, from_py(&v, bins, depth + 1)?);
        }
        return Ok(Value::Object(m));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let mut a = Vec::with_capacity(l.len());
        for x in l.iter() {
            a.push(from_py(&x, bins, depth + 1)?);
        }
        return Ok(Value::Array(a));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let mut a = Vec::with_capacity(t.len());
        for x in t.iter() {
            a.push(from_py(&x, bins, depth + 1)?);
        }
        return Ok(Value::Array(a));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(placeholder(bins, Bytes::copy_from_slice(b.as_bytes())));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(placeholder(bins, Bytes::from(b.to_vec())));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let b = obj.call_method0("tobytes")?;
        let b = b.cast::<PyBytes>()?;
        return Ok(placeholder(bins, Bytes::copy_from_slice(b.as_bytes())));
    }
    Err(PyTypeError::new_err(format!(
        "Object of type {} is not JSON serializable",
        obj.get_type().name()?
    )))
}

/// python-socketio's `data` argument: `None` → no argument, a tuple → several, anything
/// else → one.
pub(crate) fn data_to_args(data: Option<&Bound<'_, PyAny>>) -> PyResult<Args> {
    let mut bins = Vec::new();
    let values = match data {
        None => Vec::new(),
        Some(d) if d.is_none() => Vec::new(),
        Some(d) => {
            if let Ok(t) = d.cast::<PyTuple>() {
                let mut v = Vec::with_capacity(t.len());
                for x in t.iter() {
                    v.push(from_py(&x, &mut bins, 0)?);
                }
                v
            } else {
                vec![from_py(d, &mut bins, 0)?]
            }
        }
    };
    Ok(Args::from_parts(values, bins))
}

/// Positional arguments (`ack(*args)`) as event arguments.
pub(crate) fn tuple_to_args(t: &Bound<'_, PyTuple>) -> PyResult<Args> {
    let mut bins = Vec::new();
    let mut values = Vec::with_capacity(t.len());
    for x in t.iter() {
        values.push(from_py(&x, &mut bins, 0)?);
    }
    Ok(Args::from_parts(values, bins))
}

/// A handler's return value as an ack reply: `None` → nothing, a tuple → several, else one.
pub(crate) fn return_to_args(r: &Bound<'_, PyAny>) -> PyResult<Args> {
    data_to_args(Some(r))
}
