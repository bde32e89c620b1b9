//! The LeanCloud WebSocket door (placeholder: the lead's module replaces this file at merge).
pub mod query;
