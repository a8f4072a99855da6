//! Where D-Bus looks for service, policy and config files. (Stub.)
