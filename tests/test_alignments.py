"""One segmentation in every alignment format users bring gives the same frames and the same PNMI;
formats are read from the content, and what cannot be read is refused naming the file and line."""
import numpy as np
import pytest

from clustering.alignments import detect_format, load_alignments, read_segments
from clustering.manifest import Manifest
from clustering.quality import joint_counts, pair_frames, purity_pnmi

# sil 0-0.12 s, a 0.12-0.2 s, b 0.2-0.35 s, sil 0.35-0.5 s, at 100 Hz
FRAMES = ["sil"] * 12 + ["a"] * 8 + ["b"] * 15 + ["sil"] * 15
UID = "spk/u1"  # files are named by the basename, u1

LONG_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 0.5
tiers? <exists>
size = 3
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 0.5
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 0.12
            text = ""
        intervals [2]:
            xmin = 0.12
            xmax = 0.35
            text = "ab"
        intervals [3]:
            xmin = 0.35
            xmax = 0.5
            text = ""
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 0.5
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.12
            text = ""
        intervals [2]:
            xmin = 0.12
            xmax = 0.2
            text = "a"
        intervals [3]:
            xmin = 0.2
            xmax = 0.35
            text = "b"
        intervals [4]:
            xmin = 0.35
            xmax = 0.5
            text = "sil"
    item [3]:
        class = "TextTier"
        name = "events"
        xmin = 0
        xmax = 0.5
        points: size = 1
        points [1]:
            number = 0.25
            mark = "say ""b"" [2]"
'''

SHORT_TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

0
0.5
<exists>
2
"IntervalTier"
"words"
0
0.5
1
0
0.5
"ab"
"IntervalTier"
"phones"
0
0.5
4
0
0.12
""
0.12
0.2
"a"
0.2
0.35
"b"
0.35
0.5
"sil"
'''

HTK_100NS = "0 1200000 sil\n1200000 2000000 a\n2000000 3500000 b\n3500000 5000000 sil\n"
HTK_SECONDS_WITH_SCORES = "0.0 0.12 sil -10.5\n0.12 0.2 a -3.25\n0.2 0.35 b -7.0\n0.35 0.5 sil -9.0\n"
XWAVES_ROWS = "    0.12000 125 sil\n    0.20000 125 a\n    0.35000 125 b\n    0.50000 125 sil\n"
XWAVES_HEADER = "signal u1\ntype 0\ncolor 121\ncomment hand-made\nseparator ;\nnfields 1\n#\n"

FILES = {  # folder: (file name, content, detected format)
    "textgrid-long": ("u1.TextGrid", LONG_TEXTGRID, "textgrid"),
    "textgrid-short": ("u1.TextGrid", SHORT_TEXTGRID, "textgrid"),
    "htk-100ns": ("u1.lab", HTK_100NS, "htk"),
    "htk-seconds": ("u1.lab", HTK_SECONDS_WITH_SCORES, "htk"),
    "xwaves-header": ("u1.lab", XWAVES_HEADER + XWAVES_ROWS, "xwaves"),
    "xwaves-arctic": ("u1.lab", "#\n" + XWAVES_ROWS, "xwaves"),  # CMU ARCTIC's header is the `#` alone
    "xwaves-bare": ("u1.lab", XWAVES_ROWS, "xwaves"),  # no header: told from HTK by its numbers
}


def write(folder, name: str, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


@pytest.fixture
def aligned(tmp_path):
    """{format folder: its path} with the segmentation written once in each format."""
    paths = {"tsv": write(tmp_path, "valid.phn.tsv", f"{UID}\t{','.join(FRAMES)}\nspk/u2\tsil,sil\n")}
    for folder, (name, text, _) in FILES.items():
        write(tmp_path / folder, name, text)
        paths[folder] = tmp_path / folder
    return paths


def test_every_format_gives_the_same_frames_and_the_same_pnmi(aligned):
    manifest = Manifest(None, (f"{UID}.wav",), (8000,))
    units = [np.array([0] * 5 + [1] * 5 + [2] * 8 + [0] * 7)]  # a fixed 50 Hz teacher, imperfect on purpose
    scores = {}
    for name, source in aligned.items():
        frames = load_alignments(source, [UID])
        assert frames[UID] == FRAMES, name
        paired = pair_frames(units, 50, manifest, frames)
        scores[name] = purity_pnmi(joint_counts(paired.phones, paired.units, len(paired.phone_names), 3))
    assert 0 < scores["tsv"]["pnmi"] < 1
    for name, score in scores.items():
        assert score == scores["tsv"], name


@pytest.mark.parametrize("folder", sorted(FILES))
def test_the_format_is_read_from_the_content_not_the_name(tmp_path, folder):
    name, text, fmt = FILES[folder]
    assert detect_format(write(tmp_path, name, text)) == fmt
    other_name = write(tmp_path / "renamed", "u1.lab" if name.endswith(".TextGrid") else "u1.TextGrid", text)
    assert detect_format(other_name) == fmt
    assert load_alignments(tmp_path / "renamed", [UID])[UID] == FRAMES


def test_htk_rows_that_meet_end_to_start_are_htk_even_where_xwaves_would_read_them(tmp_path):
    # integer columns, first column increasing: an Xwaves reading fits too, but each row starts
    # where the previous one ended, which is HTK's shape
    path = write(tmp_path, "u1.lab", HTK_100NS)
    assert detect_format(path) == "htk"
    assert load_alignments(tmp_path, [UID], "lab")[UID] == FRAMES


def test_a_lab_that_could_be_either_is_refused_unless_the_format_is_given(tmp_path):
    path = write(tmp_path, "u1.lab", "0.5 125 sil\n")  # HTK 0.5-125 s, or Xwaves ending at 0.5 s?
    with pytest.raises(ValueError, match=r"u1\.lab:1: cannot tell HTK .* --alignment-format htk"):
        load_alignments(tmp_path, [UID])
    assert load_alignments(tmp_path, [UID], "xwaves")[UID] == ["sil"] * 50
    assert read_segments(path, "htk") == [(0.5, 125.0, "sil")]


@pytest.mark.parametrize("name, text, said", [
    ("u1.lab", "0 1200000 sil\n1200000 2x00000 a\n", r"u1\.lab:2: end time '2x00000' is not a number"),
    ("u1.lab", XWAVES_HEADER + "0.12 125 sil\n0.10 125 a\n", r"u1\.lab:9: segment 'a' ends at 0\.1 s"),
    ("u1.lab", "#\n0.12 125 sil\n0.2\n", r"u1\.lab:3: expected 'end_time colour phone'"),
    ("u1.TextGrid", SHORT_TEXTGRID.replace('"a"', "0.3"), r"u1\.TextGrid:26: expected a string \(the text of "
                                                          r"interval 2 of tier 2 \('phones'\)\)"),
    ("u1.TextGrid", SHORT_TEXTGRID[:100], r"u1\.TextGrid: the file ends where .* should be"),
])
def test_errors_name_the_file_and_the_line(tmp_path, name, text, said):
    write(tmp_path, name, text)
    with pytest.raises(ValueError, match=said):
        load_alignments(tmp_path, [UID])


def test_sources_that_do_not_fit_are_refused_with_the_fix(tmp_path, aligned):
    with pytest.raises(ValueError, match="unknown alignment format 'ctm'; use tsv, textgrid, htk, xwaves or lab"):
        load_alignments(aligned["tsv"], [UID], "ctm")
    with pytest.raises(ValueError, match="not a fairseq frame-level tsv .* pass their folder"):
        load_alignments(aligned["textgrid-long"] / "u1.TextGrid", [UID])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .TextGrid / .textgrid / .lab files"):
        load_alignments(tmp_path / "empty", [UID])
    assert load_alignments(aligned["htk-100ns"], ["spk/missing"]) == {}
