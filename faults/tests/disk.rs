//! The lazy filesystem on a real FUSE mount, in the lab's private mount namespace: what
//! survives a power loss, and that a killed process leaves no mount on the host.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::{ensure, Context};
use raftbus_faults::{Lab, LazyMount};

use crate::util;

/// The mount and its backing dir, in a temp dir.
struct Fixture {
    _tmp: tempfile::TempDir,
    mount: LazyMount,
    mnt: std::path::PathBuf,
    backing: std::path::PathBuf,
}

fn fixture(lab: &Lab) -> anyhow::Result<Fixture> {
    util::require(
        lab.capabilities().fuse,
        &format!("FUSE in the lab ({})", lab.capabilities().notes.join("; ")),
    )?;
    let tmp = tempfile::tempdir()?;
    let mnt = tmp.path().join("mnt");
    let backing = tmp.path().join("backing");
    fs::create_dir(&mnt)?;
    fs::create_dir(&backing)?;
    let mount = LazyMount::mount(&backing, &mnt)?;
    Ok(Fixture {
        _tmp: tmp,
        mount,
        mnt,
        backing,
    })
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all().context("fsync of a directory")
}

pub fn unsynced_write_is_gone_after_drop(lab: &Lab) -> anyhow::Result<()> {
    let mut fx = fixture(lab)?;
    let path = fx.mnt.join("data");
    File::create(&path)?;
    sync_dir(&fx.mnt)?;
    fs::write(&path, b"not synced")?;
    ensure!(
        fs::read(&path)? == b"not synced",
        "reads must see unsynced data"
    );
    ensure!(
        fs::read(fx.backing.join("data"))?.is_empty(),
        "unsynced data reached the backing file"
    );
    let report = fx.mount.control().drop_unsynced()?;
    ensure!(report.files == 1 && report.bytes > 0, "{report}");
    ensure!(fs::read(&path)?.is_empty(), "dropped data still readable");
    ensure!(fs::metadata(&path)?.len() == 0, "stale size after drop");
    fx.mount.unmount()?;
    Ok(())
}

pub fn synced_write_survives_drop(lab: &Lab) -> anyhow::Result<()> {
    let mut fx = fixture(lab)?;
    let path = fx.mnt.join("log");
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    sync_dir(&fx.mnt)?;
    f.write_all(b"record-1;")?;
    f.sync_data()?;
    f.write_all(b"record-2;")?;
    drop(f);
    ensure!(fs::read(&path)? == b"record-1;record-2;");
    fx.mount.control().drop_unsynced()?;
    ensure!(
        fs::read(&path)? == b"record-1;",
        "after drop: {:?}",
        String::from_utf8_lossy(&fs::read(&path)?)
    );
    // Appends after the drop continue at the durable end, not at the old volatile one.
    let mut f = OpenOptions::new().append(true).open(&path)?;
    f.write_all(b"record-3;")?;
    f.sync_all()?;
    ensure!(fs::read(fx.backing.join("log"))? == b"record-1;record-3;");
    fx.mount.unmount()?;
    Ok(())
}

pub fn create_without_dir_fsync_is_gone(lab: &Lab) -> anyhow::Result<()> {
    let mut fx = fixture(lab)?;
    fs::create_dir(fx.mnt.join("sub"))?;
    sync_dir(&fx.mnt)?;
    let kept = fx.mnt.join("sub/kept");
    let lost = fx.mnt.join("sub/lost");
    let mut f = File::create(&kept)?;
    f.write_all(b"k")?;
    f.sync_all()?;
    sync_dir(&fx.mnt.join("sub"))?;
    let mut f = File::create(&lost)?;
    f.write_all(b"l")?;
    // The file's data is synced, its directory entry is not.
    f.sync_all()?;
    ensure!(lost.exists());
    let report = fx.mount.control().drop_unsynced()?;
    ensure!(report.namespace_ops == 1, "{report}");
    ensure!(
        !lost.exists(),
        "a create without a directory fsync survived"
    );
    ensure!(fs::read(&kept)? == b"k");
    let names: Vec<String> = fs::read_dir(fx.mnt.join("sub"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    ensure!(names == ["kept"], "{names:?}");
    // A rename without a directory fsync is undone too.
    fs::rename(&kept, fx.mnt.join("sub/renamed"))?;
    fx.mount.control().drop_unsynced()?;
    ensure!(kept.exists() && !fx.mnt.join("sub/renamed").exists());
    fx.mount.unmount()?;
    Ok(())
}

pub fn torn_write_leaves_a_prefix(lab: &Lab) -> anyhow::Result<()> {
    let mut fx = fixture(lab)?;
    let path = fx.mnt.join("aof");
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    sync_dir(&fx.mnt)?;
    f.write_all(b"SET a 1\n")?;
    f.sync_data()?;
    f.write_all(b"SET b 2222222222\n")?;
    drop(f);
    let report = fx.mount.control().tear_last_write(0.5)?;
    let torn = report.torn.context("no torn write reported")?;
    ensure!(
        torn.offset == 8 && torn.len == 17 && torn.kept == 8,
        "{torn:?}"
    );
    let after = fs::read(&path)?;
    ensure!(
        after == b"SET a 1\nSET b 22",
        "{:?}",
        String::from_utf8_lossy(&after)
    );
    fx.mount.unmount()?;
    Ok(())
}

/// A child that mounts and is then SIGKILLed: the mount lived only in its namespace.
pub fn killed_child_leaves_no_mount() -> anyhow::Result<()> {
    let name = "disk::mount_and_die_child";
    let out = util::run_child(name, |_| {})?;
    // The child kills itself after printing where it mounted.
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(util::SKIP_CODE) {
        return util::child_result(name, &out);
    }
    let mnt = stdout
        .lines()
        .find_map(|l| l.strip_prefix("mounted: "))
        .with_context(|| {
            format!(
                "child did not mount: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    use std::os::unix::process::ExitStatusExt;
    ensure!(
        out.status.signal() == Some(9),
        "child was not killed: {}",
        out.status
    );
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    ensure!(
        !mounts.contains("raftbus-lazyfs") && !mounts.contains(mnt),
        "a lazy filesystem mount is left on the host:\n{mounts}"
    );
    Ok(())
}

pub fn mount_and_die_child(lab: &Lab) -> anyhow::Result<()> {
    let fx = fixture(lab)?;
    fs::write(fx.mnt.join("x"), b"x")?;
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    ensure!(
        mounts.contains("raftbus-lazyfs"),
        "not mounted in the child"
    );
    println!("mounted: {}", fx.mnt.display());
    std::io::stdout().flush()?;
    nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL)?;
    unreachable!("SIGKILL to self");
}
