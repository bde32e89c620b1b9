//! The admin API's error answers, LeanCloud's `{"code", "error"}` with a
//! fitting HTTP status, and the extractors that turn bad input into them
//! instead of axum's plain-text rejections.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::protocol::{ErrorBody, ErrorCode};

/// LeanCloud's REST code for a body that is not the JSON expected.
pub const MALFORMED_JSON: u16 = 107;
/// LeanCloud's code (and status) for missing or wrong credentials.
pub const UNAUTHORIZED: u16 = 401;
/// No such endpoint or method; LeanCloud's REST "object not found".
pub const NO_ROUTE: u16 = 404;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u16,
    pub error: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u16, error: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            error: error.into(),
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED, "Unauthorized.")
    }

    /// A parameter out of range or of the wrong shape.
    pub fn bad_params(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ConvApiFailed.code(),
            detail,
        )
    }

    pub fn malformed(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            MALFORMED_JSON,
            format!("Malformed JSON: {detail}"),
        )
    }
}

impl From<ErrorBody> for ApiError {
    fn from(e: ErrorBody) -> Self {
        use ErrorCode as C;
        let status = match e.code {
            c if c == C::ConvNotFound.code() || c == C::MessageNotFound.code() => {
                StatusCode::NOT_FOUND
            }
            c if c == C::FrameTooLong.code() => StatusCode::PAYLOAD_TOO_LARGE,
            c if c == C::InternalError.code() => StatusCode::INTERNAL_SERVER_ERROR,
            c if c == C::ServerShutdown.code() || c == C::SendMessageTimeout.code() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code, e.detail)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        // A full disk or a failed store passes: 503 says "try again later".
        let unavailable = e.is_refusal();
        let mut api: ApiError = ErrorBody::from(e).into();
        if unavailable {
            api.status = StatusCode::SERVICE_UNAVAILABLE;
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "code": self.code, "error": self.error })),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body, read whatever the Content-Type says (curl's `-d` sends a
/// form type), an empty body being `{}` so optional bodies may be left out.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                e.status(),
                MALFORMED_JSON,
                format!("reading the body: {}", e.body_text()),
            )
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(Body).map_err(|e| {
            // Well-formed JSON of the wrong shape is a bad argument, not a
            // malformed body.
            if e.classify() == serde_json::error::Category::Data {
                ApiError::bad_params(format!("invalid body: {e}"))
            } else {
                ApiError::malformed(e)
            }
        })
    }
}

/// Query parameters, with a JSON error naming the bad one.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Params(t))
            .map_err(|e| ApiError::bad_params(e.body_text()))
    }
}

/// Path segments, with a JSON error when they do not fit.
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Segments(t))
            .map_err(|e| ApiError::bad_params(e.body_text()))
    }
}

/// A conversation id from the path: anything that is not one names no
/// conversation.
pub fn conv_id(text: &str) -> ApiResult<crate::protocol::ConvId> {
    text.parse().map_err(|_| {
        ErrorBody::new(ErrorCode::ConvNotFound, format!("no conversation {text:?}")).into()
    })
}
