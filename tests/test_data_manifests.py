"""Manifests: the shipped ones, schema validation, splits and the VGGSound builder."""
from __future__ import annotations

from collections import Counter

import pytest

from avlib.cli import main
from avlib.data.manifests import (COLUMNS, ClipRow, convert_report_repo_index, default_manifest,
                                  leaked_clips, read_manifest, report_split, select,
                                  vggsound_manifest, write_manifest)
from avlib.errors import ConfigError

HEADER = ",".join(COLUMNS)
GOOD_ROW = "dog_clip_001,dog,train,,0,2,,"


def manifest_file(tmp_path, *rows: str, first_line: str = "# avlib-manifest v1", header: str = HEADER):
    path = tmp_path / "m.csv"
    path.write_text("\n".join([first_line, "# a comment", header, *rows]) + "\n")
    return path


def splits(rows):
    return Counter(row.split for row in rows)


@pytest.mark.parametrize("dataset, n_rows, n_train, n_test", [
    ("volleyball", 977, 468, 509), ("dog", 500, 400, 100), ("thunder", 400, 200, 200),
    ("multiclass", 900, 600, 300)])
def test_shipped_manifests_have_the_report_repository_counts(dataset, n_rows, n_train, n_test):
    rows = read_manifest(default_manifest(dataset))
    assert len(rows) == n_rows
    assert splits(rows) == {"train": n_train, "test": n_test}


def test_shipped_manifests_reproduce_the_report_repository_files(fixtures_dir):
    originals = fixtures_dir / "report_repo_manifests"
    for dataset, name in [("volleyball", "vggsound_subset"), ("dog", "dog"), ("thunder", "thunder"),
                          ("multiclass", "mix")]:
        assert read_manifest(default_manifest(dataset)) == convert_report_repo_index(originals / f"{name}.csv")


def test_shipped_rows_follow_the_naming_rules():
    volleyball = read_manifest(default_manifest("volleyball"))
    row = volleyball[0]
    assert row.clip_id == f"{row.source_id}_{int(row.start_s):06d}" and row.duration_s == 10
    dog = {r.clip_id: r for r in read_manifest(default_manifest("dog"))}
    assert (dog["dog_clip_003"].start_s, dog["dog_clip_003"].end_s, dog["dog_clip_003"].source_id) == (4, 6, "")
    multiclass = read_manifest(default_manifest("multiclass"))
    union = read_manifest(default_manifest("dog")) + read_manifest(default_manifest("thunder"))
    assert Counter(multiclass) == Counter(union)


def test_thunder_leak_is_detected():
    rows = read_manifest(default_manifest("thunder"))
    assert len(leaked_clips(rows)) == 200
    assert leaked_clips(read_manifest(default_manifest("dog"))) == []


def test_write_then_read_round_trips(tmp_path):
    rows = [ClipRow("a-1", "dog", "train", "", 0.0, 2.0, (0.5, 1.25), (0.5, 1.25)),
            ClipRow("b_2", "playing volleyball", "test", "-xYz", 8.0, 18.0)]
    path = write_manifest(tmp_path / "out.csv", rows, comments=["made by a test"])
    assert path.read_text().startswith("# avlib-manifest v1\n# made by a test\n")
    assert read_manifest(path) == rows


@pytest.mark.parametrize("row, message", [
    ("dog_clip_002,dog,validation,,0,2,,", "split 'validation'"),
    ("dog_clip_002,dog,train,,2,2,,", "start_s < end_s"),
    ("dog_clip_002,dog,train,,two,4,,", "start_s 'two' is not a number"),
    ("dog_clip_002,dog,train,,0,2", "expected 8 comma-separated fields"),
    ("dog_clip_002,dog,train,,0,2,,,extra", "expected 8 comma-separated fields"),
    ("../etc/passwd,dog,train,,0,2,,", "not a usable file name"),
    ("dog_clip_002,,train,,0,2,,", "empty label"),
    ("dog_clip_002,dog,train,,0,2,0.5;3,", "times outside the clip"),
    ("dog_clip_002,dog,train,,0,2,0.5;x,", "separated by ';'"),
    ("dog_clip_001,dog,train,,0,2,,", "listed twice in split 'train' \\(also on line 4\\)"),
])
def test_bad_rows_name_their_line(tmp_path, row, message):
    path = manifest_file(tmp_path, GOOD_ROW, row)
    with pytest.raises(ConfigError, match=f"m.csv, line 5: .*{message}"):
        read_manifest(path)


def test_a_clip_may_be_in_both_splits_once_each(tmp_path):
    rows = read_manifest(manifest_file(tmp_path, GOOD_ROW, GOOD_ROW.replace("train", "test")))
    assert leaked_clips(rows) == ["dog_clip_001"]


@pytest.mark.parametrize("kwargs, message", [
    ({"first_line": "clip_id,label"}, "line 1: not an avlib manifest"),
    ({"first_line": "# avlib-manifest v7"}, "version '7' is not supported"),
    ({"header": "clip_id,label,split,source,start_s,end_s,video_events_s,audio_events_s"},
     "line 3: bad header \\(missing source_id; unknown source\\)"),
])
def test_bad_files_are_rejected(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        read_manifest(manifest_file(tmp_path, GOOD_ROW, **kwargs))


def test_missing_manifest_and_unknown_dataset(tmp_path):
    with pytest.raises(ConfigError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="no shipped manifest for dataset 'cats'"):
        default_manifest("cats")


def test_report_split_is_seeded_stable_and_about_80_20():
    ids = [f"clip_{i:05d}" for i in range(4000)]
    first = [report_split(i, seed=3) for i in ids]
    assert first == [report_split(i, seed=3) for i in ids]
    assert first != [report_split(i, seed=4) for i in ids]
    assert 0.17 < first.count("test") / len(ids) < 0.23


def test_adding_rows_moves_no_existing_clip():
    rows = read_manifest(default_manifest("dog"))
    extra = [ClipRow(f"dog_clip_{i:03d}", "dog", "train", "", 2.0 * i, 2.0 * i + 2) for i in range(501, 701)]
    for split in ("train", "test"):
        before = {r.clip_id for r in select(rows, split, "report", seed=9)}
        after = {r.clip_id for r in select(rows + extra, split, "report", seed=9)}
        assert before == after - {r.clip_id for r in extra}


def test_select_by_scheme_and_class():
    rows = read_manifest(default_manifest("multiclass"))
    dog_test = select(rows, "test", "repo", classes=["dog"])
    assert len(dog_test) == 100 and {r.label for r in dog_test} == {"dog"}
    train, test = (select(rows, s, "report") for s in ("train", "test"))
    assert len(train) + len(test) == 700                       # distinct clips: 500 dog + 200 thunder
    assert not {r.clip_id for r in train} & {r.clip_id for r in test}
    assert all(r.split == "test" for r in test)
    with pytest.raises(ConfigError, match="class 'cat' not in the manifest"):
        select(rows, "train", classes=["cat"])
    with pytest.raises(ConfigError, match="split scheme 'random'"):
        select(rows, "train", "random")


@pytest.fixture
def vggsound_index(tmp_path):
    path = tmp_path / "vggsound.csv"
    path.write_text('abcdefghijk,30,playing volleyball,train\n'
                    '-bcdefghijk,0,"people eating, noodle",train\n'
                    'zyxwvutsrqp,5,playing volleyball,test\n'
                    'zyxwvutsrqp,125,playing volleyball,train\n')
    return path


def test_vggsound_builder_keeps_one_class_with_official_split(vggsound_index):
    rows, counts = vggsound_manifest(vggsound_index)
    assert counts == {"index_rows": 4, "rows": 3, "train": 2, "test": 1}
    assert [r.clip_id for r in rows] == ["abcdefghijk_000030", "zyxwvutsrqp_000005", "zyxwvutsrqp_000125"]
    assert (rows[2].source_id, rows[2].start_s, rows[2].end_s, rows[2].split) == ("zyxwvutsrqp", 125, 135, "train")
    with pytest.raises(ConfigError, match="no rows labelled 'playing tennis'"):
        vggsound_manifest(vggsound_index, "playing tennis")


def test_vggsound_cli_writes_a_valid_manifest(vggsound_index, tmp_path, capsys):
    out = tmp_path / "volleyball_official.csv"
    assert main(["data", "vggsound", "--index", str(vggsound_index), "--out", str(out)]) == 0
    assert "3 'playing volleyball' clips of 4 index rows (2 train / 1 test)" in capsys.readouterr().out
    assert len(read_manifest(out)) == 3
