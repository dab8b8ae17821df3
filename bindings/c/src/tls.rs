//! TLS settings shared by the server and client configurations: a server certificate
//! (`tether_core::tls::ServerTls`) and a client's trust (`tether_core::tls::ClientTls`).

use std::ffi::c_char;

use tether_core::tls::{ClientTls, ServerTls, TlsError};

use crate::error::{Fail, tether_result};
use crate::util::{bytes, cstr};

fn tls_error(e: TlsError) -> Fail {
    let code = match &e {
        TlsError::Read { .. } => tether_result::Io,
        _ => tether_result::InvalidParameter,
    };
    Fail::new(code, format!("tls: {e}"))
}

/// A server certificate chain (leaf first) and private key from PEM bytes.
pub(crate) unsafe fn server_tls_pem(
    cert: *const u8,
    cert_len: usize,
    key: *const u8,
    key_len: usize,
) -> Result<ServerTls, Fail> {
    // SAFETY: the caller promised readable buffers of these lengths.
    let (c, k) = unsafe {
        (
            bytes(cert, cert_len, "cert_pem")?,
            bytes(key, key_len, "key_pem")?,
        )
    };
    ServerTls::from_pem(c, k).map_err(tls_error)
}

/// A server certificate chain and private key from PEM files.
pub(crate) unsafe fn server_tls_files(
    cert_path: *const c_char,
    key_path: *const c_char,
) -> Result<ServerTls, Fail> {
    // SAFETY: NUL-terminated strings.
    let (c, k) = unsafe { (cstr(cert_path, "cert_path")?, cstr(key_path, "key_path")?) };
    ServerTls::from_pem_files(c, k).map_err(tls_error)
}

/// What a client trusts: the Mozilla roots plus added CA certificates, or (danger)
/// anything.
#[derive(Clone, Default)]
pub(crate) struct ClientTrust {
    extra_ca: Vec<u8>,
    danger_accept_invalid: bool,
}

impl ClientTrust {
    /// Add the CA certificates in PEM bytes (checked now).
    pub(crate) unsafe fn add_ca_pem(&mut self, pem: *const u8, len: usize) -> Result<(), Fail> {
        // SAFETY: forwarded.
        let p = unsafe { bytes(pem, len, "ca_pem") }?;
        ClientTls::with_ca_pem(p).map_err(tls_error)?;
        self.extra_ca.extend_from_slice(p);
        self.extra_ca.push(b'\n');
        Ok(())
    }

    /// Add the CA certificates in a PEM file (read and checked now).
    pub(crate) unsafe fn add_ca_file(&mut self, path: *const c_char) -> Result<(), Fail> {
        // SAFETY: forwarded.
        let p = unsafe { cstr(path, "ca_path") }?;
        let pem =
            std::fs::read(p).map_err(|e| Fail::new(tether_result::Io, format!("{p}: {e}")))?;
        ClientTls::with_ca_pem(&pem).map_err(tls_error)?;
        self.extra_ca.extend_from_slice(&pem);
        self.extra_ca.push(b'\n');
        Ok(())
    }

    pub(crate) fn danger_accept_invalid_certs(&mut self, yes: bool) {
        self.danger_accept_invalid = yes;
    }

    /// The rustls trust to use, or `None` for the default (the Mozilla roots).
    pub(crate) fn build(&self) -> Result<Option<ClientTls>, Fail> {
        if self.danger_accept_invalid {
            return Ok(Some(ClientTls::danger_accept_invalid_certs()));
        }
        if self.extra_ca.is_empty() {
            return Ok(None);
        }
        ClientTls::with_ca_pem(&self.extra_ca)
            .map(Some)
            .map_err(tls_error)
    }
}
