//! Running a vibevoice-rt binary as a user would, shared by the CLI tests.

use std::path::Path;
use std::process::{Command, Output};

/// A command for `binary` that inherits no `TTS_*`, `RUST_LOG` or `RUST_BACKTRACE` variable
/// from the test's environment.
pub fn clean_command(binary: &Path) -> Command {
    let mut cmd = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TTS_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG").env_remove("RUST_BACKTRACE");
    cmd
}

/// Process output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// No panic message and no Rust panic exit code (101).
pub fn assert_no_panic(out: &Output) {
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}
