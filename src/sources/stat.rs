//! File metadata without following symlinks, birth time included (statx). (Stub.)
