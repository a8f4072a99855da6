//! Readers of the system. Sources return typed structs and typed errors that
//! name the path or pid; they know nothing of SQL, rows or column names.
pub mod accounts;
pub mod bus_config;
pub mod bus_daemon;
pub mod collect;
pub mod exec_target;
pub mod exec_watch;
pub mod file_watch;
pub mod fs_safe;
pub mod hash;
pub mod in_root;
pub mod launch;
pub mod lineage;
pub mod packages;
pub mod proc;
pub mod proc_connector;
pub mod process_facts;
pub mod provenance;
pub mod service_dirs;
pub mod service_file;
pub mod service_names;
pub mod service_scripts;
pub mod stat;
pub mod systemd_unit;
pub mod unit_files;
pub mod watch_target;
