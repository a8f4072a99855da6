//! Hosts adapt a caller to the table API. A host knows how to receive a
//! query and return rows; it never knows what a table does.
pub mod osquery;
pub mod sqlite;
