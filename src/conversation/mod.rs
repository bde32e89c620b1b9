//! Conversation commands: create, members, settings, delete, and the
//! system (service) conversations the app runs. The table and its rules
//! are [`crate::core::conversation`].

pub mod ops;
pub mod system;
