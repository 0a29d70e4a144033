"""The runner's build cache: which builds `prune_builds` keeps (no simulation)."""

import os
import time

import pytest

from tb import runner


def _fake_build(root, name, used_at, *, finished=True, variant="v1"):
    path = root / name
    path.mkdir(parents=True)
    (path / "Vtop").write_text("binary")
    if variant is not None:
        (path / "variant").write_text(variant + "\n")
    if finished:
        stamp = path / "built.stamp"
        stamp.write_text("1.0\n")
        os.utime(stamp, (used_at, used_at))
    else:
        os.utime(path, (used_at, used_at))
    return path


def test_prune_keeps_the_most_recently_used_builds_of_one_config_and_bench(tmp_path):
    now = time.time()
    old = [_fake_build(tmp_path, f"default-core-{i:012x}", now - 1000 * (i + 1)) for i in range(5)]
    other_top = _fake_build(tmp_path, "default-array-aaaaaaaaaaaa", now - 9000)
    other_cfg = _fake_build(tmp_path, "default_ws-core-bbbbbbbbbbbb", now - 9000)
    removed = runner.prune_builds(tmp_path, "default", "core", "v1", keep=2)
    assert sorted(removed) == sorted(old[2:])
    assert all(p.is_dir() for p in old[:2])
    assert not any(p.exists() for p in old[2:])
    # other benches and configs (even one whose name starts with this one's) are left alone
    assert other_top.is_dir() and other_cfg.is_dir()


def test_prune_spares_a_build_in_progress_but_not_an_abandoned_one(tmp_path):
    now = time.time()
    kept = _fake_build(tmp_path, "tiny-core-000000000001", now)
    building = _fake_build(tmp_path, "tiny-core-000000000002", now - 60, finished=False)
    abandoned = _fake_build(
        tmp_path,
        "tiny-core-000000000003",
        now - 2 * runner.STALE_UNFINISHED_SECONDS,
        finished=False,
    )
    removed = runner.prune_builds(tmp_path, "tiny", "core", "v1", keep=1)
    assert removed == [abandoned]
    assert kept.is_dir() and building.is_dir()


def test_prune_drops_index_entries_of_removed_builds(tmp_path):
    now = time.time()
    new = _fake_build(tmp_path, "tiny-array-000000000001", now)
    _fake_build(tmp_path, "tiny-array-000000000002", now - 100)
    index = tmp_path / "index"
    index.mkdir()
    (index / "keep").write_text(new.name + "\n")
    (index / "stale").write_text("tiny-array-000000000002\n")
    runner.prune_builds(tmp_path, "tiny", "array", "v1", keep=1)
    assert sorted(p.name for p in index.iterdir()) == ["keep"]


def test_prune_keeps_other_variants_of_a_config(tmp_path):
    # another DRAM size (or another config of the same name) is not an older version
    now = time.time()
    mine = [_fake_build(tmp_path, f"default-core-{i:012x}", now - i) for i in range(3)]
    dram32 = _fake_build(tmp_path, "default-core-00000000000a", now - 9000, variant="v2")
    legacy = _fake_build(tmp_path, "default-core-00000000000b", now - 9000, variant=None)
    removed = runner.prune_builds(tmp_path, "default", "core", "v1", keep=2)
    assert sorted(removed) == sorted([mine[2], legacy])  # unmarked: counted as this variant
    assert dram32.is_dir()


def test_reuse_marks_a_build_as_recently_used(tmp_path):
    build_dir = _fake_build(tmp_path, "tiny-core-000000000001", time.time() - 5000, variant=None)
    stamp = build_dir / "built.stamp"
    before = stamp.stat().st_mtime
    runner._touch(build_dir, "v3")
    assert stamp.stat().st_mtime > before + 4000
    assert (build_dir / "variant").read_text().strip() == "v3"


@pytest.mark.parametrize("value", ["0", "-1", "three"])
def test_bad_keep_count_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("TANDEM_KEEP_BUILDS", value)
    with pytest.raises(ValueError, match="TANDEM_KEEP_BUILDS"):
        runner._keep_builds()
