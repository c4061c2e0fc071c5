//! Renders a generated report in headless Chromium (when installed) and checks the
//! screenshot is not blank. Skipped, with a message, when `chromium` is not on PATH.
//!
//! Set `RAFTBUS_SCREENSHOT_DIR` to keep the screenshots for a look.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{png_luma_variance, png_size, write_both, write_single};

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Screenshots `html` into `out` with an isolated, offline browser profile.
fn screenshot(browser: &Path, html: &Path, out: &Path) {
    use std::os::unix::process::CommandExt;
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", out.display()))
        .arg("--window-size=1280,3000")
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own process group, so a timeout takes its helpers down too.
        .process_group(0)
        .spawn()
        .expect("chromium starts");
    let pgid = child.id();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
            let _ = child.wait();
            panic!("chromium did not finish in 90s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Helpers of the group may outlive the main process briefly; end them.
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn keep(path: &Path, name: &str) {
    if let Some(dir) = std::env::var_os("RAFTBUS_SCREENSHOT_DIR") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::copy(path, Path::new(&dir).join(name));
    }
}

#[test]
fn report_renders_in_a_headless_browser() {
    let Some(browser) = chromium() else {
        // CI installs chromium, so there this always runs; a dev machine may opt out.
        if std::env::var_os("RAFTBUS_ALLOW_SKIP").is_some() {
            eprintln!("SKIPPED: chromium not installed (RAFTBUS_ALLOW_SKIP is set)");
            return;
        }
        panic!("chromium is required for this test: sudo apt-get install -y chromium (or set RAFTBUS_ALLOW_SKIP=1)");
    };
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    write_single(&single);
    let rep = raftbus_reports::render_run(&single).unwrap();
    let both = dir.path().join("both");
    write_both(&both);
    let rep_both = raftbus_reports::render_run(&both).unwrap();

    for (html, name) in [(&rep.html, "single.png"), (&rep_both.html, "both.png")] {
        let shot = dir.path().join(name);
        screenshot(&browser, html, &shot);
        assert!(shot.is_file(), "screenshot written");
        let (w, h) = png_size(&shot);
        assert!(w >= 1000 && h >= 2000, "screenshot size {w}x{h}");
        let variance = png_luma_variance(&shot);
        // A blank page has zero variance; a rendered report with text, tables and charts
        // has plenty.
        assert!(
            variance > 100.0,
            "screenshot looks blank (luma variance {variance:.1})"
        );
        keep(&shot, name);
    }
}
