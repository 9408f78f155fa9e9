//! object_store's errors as coffre's: the class a user or a scheduler acts on (not found,
//! refused credentials, a store failure), with the original kept as the source.

use object_store::path::Path as ObjectPath;

use crate::error::{Error, one_line};

pub(super) fn store_error(action: &str, path: &ObjectPath, e: object_store::Error) -> Error {
    let text = one_line(&e.to_string());
    let error = match &e {
        object_store::Error::NotFound { .. } => {
            Error::not_found(format!("{action} {path}: not found"))
        }
        object_store::Error::AlreadyExists { .. } => {
            Error::store(format!("{action} {path}: it already exists"))
        }
        // Some requests (S3 listings) come back as generic errors that only name the status.
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => refused(action, path, &text),
        _ if text.contains("403 Forbidden") || text.contains("401 Unauthorized") => {
            refused(action, path, &text)
        }
        _ => Error::store(format!("{action} {path}: {text}")),
    };
    error.caused_by(e)
}

/// The store refused the credentials: fixing them, not retrying, helps.
fn refused(action: &str, path: &ObjectPath, text: &str) -> Error {
    Error::auth(format!(
        "{action} {path}: the store refused the credentials: {text} (check the store's access key and secret, and their permissions)"
    ))
}
