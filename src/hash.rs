//! Content hashing (sha256) of files and directories.
