//! osquery-dbus: SQL tables over D-Bus persistence on Linux.
//!
//! Data flows one way: a host (`hosts::osquery` over Thrift, or
//! `hosts::sqlite` embedded) turns its caller's query into a
//! [`context::QueryContext`], a table in [`tables`] turns that into rows by
//! calling [`sources`], and the host hands the rows back. Schemas live in
//! `tables/*.toml`, which `build.rs` checks and compiles into [`spec`].
//! The data every layer shares, [`row`] (cells, rows, sinks) and
//! [`settings`], are leaves: no layer imports another's module for them.
pub mod blind;
pub mod context;
pub mod hosts;
pub mod hunt;
pub mod output;
pub mod packs;
pub mod row;
pub mod settings;
pub mod sources;
pub mod spec;
pub mod tables;
pub mod verdict;
