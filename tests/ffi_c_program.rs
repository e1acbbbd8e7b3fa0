//! Compiles tests/c/monitor_test.c against include/factortopy.h and the library cargo built for
//! this test run, once against the shared library (cdylib) and once against the static library
//! (staticlib), and runs both. `.ci/c_abi_check.sh` runs the same program under valgrind.
//!
//! Needs a C compiler (`$CC`, else `cc`); without one the test says so and passes, since the
//! Rust side of the ABI is covered by tests/ffi_abi.rs and CI runs the C check separately.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Directory holding libfactortopy.{so,a}: the profile directory above this test's `deps/`.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for d in [deps.parent().unwrap(), deps] {
        if d.join("libfactortopy.a").exists() && d.join(format!("libfactortopy{}", std::env::consts::DLL_SUFFIX)).exists() {
            return d.to_path_buf();
        }
    }
    panic!("libfactortopy.so / .a not found next to {}", exe.display());
}

fn compiler() -> Option<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    Command::new(&cc).arg("--version").output().ok().filter(|o| o.status.success()).map(|_| cc)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{text}", out.status);
    text
}

#[test]
fn c_program_against_shared_and_static_library() {
    let Some(cc) = compiler() else {
        eprintln!("no C compiler found (set CC); skipping the C program test");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("tests/c/monitor_test.c");
    let include = root.join("include");
    let lib = lib_dir();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c_abi");
    std::fs::create_dir_all(&tmp).unwrap();
    let warn = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"];

    let shared = tmp.join("monitor_test_shared");
    run(Command::new(&cc)
        .args(warn)
        .arg("-I")
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&shared)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lfactortopy", "-lm"]));
    let stat = tmp.join("monitor_test_static");
    run(Command::new(&cc)
        .args(warn)
        .arg("-I")
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&stat)
        .arg(lib.join("libfactortopy.a"))
        .args(["-lpthread", "-ldl", "-lm"]));

    for (exe, name) in [(&shared, "shared"), (&stat, "static")] {
        let work = tmp.join(format!("work_{name}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let out = run(Command::new(exe).arg(&work));
        assert!(out.contains("C ABI test passed"), "{name}:\n{out}");
        eprintln!("--- {name} ---\n{out}");
    }
}
