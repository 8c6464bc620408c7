import io
import json
import os

import numpy as np
import pytest
from lightly.utils.io import load_embeddings, save_embeddings

from kurate.errors import KurateError
from kurate.io.embeddings_io import (
    flag_column,
    number_column,
    read_columns,
    read_embeddings,
    read_lightly_csv,
    read_lightly_table,
    write_embeddings,
    write_lightly_csv,
)

WEIRD_NAMES = [
    "plain.jpg",
    "dir/sub/deep.png",
    "with,comma.jpg",
    'with"quote".jpg',
    'both,"and".png',
    "new\nline.jpg",
    "carriage\rreturn.jpg",
    " leading space.jpg",
    "ümlaut-日本.png",
    "semi;colon'apostrophe.jpg",
]


def _matrix(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) * np.exp(rng.uniform(-12, 12, (n, d)))).astype(np.float32)
    X[0, : min(d, 4)] = [0.0, -0.0, 1e-5, 12345678.0][: min(d, 4)]
    return X


# --------------------------------------------------------------------------- artifact


def test_artifact_round_trip_mmap_and_meta(tmp_path):
    X = _matrix(len(WEIRD_NAMES), 7)
    out = str(tmp_path / "emb")
    write_embeddings(out, WEIRD_NAMES, X, {"model": {"name": "resnet-18"}, "weights_source": "test"})
    assert sorted(os.listdir(out)) == ["embeddings.npy", "filenames.csv", "meta.json"]

    names, Y, meta = read_embeddings(out)
    assert names == WEIRD_NAMES
    assert isinstance(Y, np.memmap) and Y.dtype == np.float32
    np.testing.assert_array_equal(Y, X)
    assert meta["count"] == len(WEIRD_NAMES) and meta["dim"] == 7
    assert meta["model"] == {"name": "resnet-18"} and meta["weights_source"] == "test"
    assert meta["normalized"] is False

    names2, Y2, _ = read_embeddings(out, mmap=False)
    assert names2 == WEIRD_NAMES and not isinstance(Y2, np.memmap)
    np.testing.assert_array_equal(Y2, X)
    # the npy is a plain numpy file any tool can read
    np.testing.assert_array_equal(np.load(os.path.join(out, "embeddings.npy")), X)


def test_artifact_normalized_flag_and_float64_input(tmp_path):
    X = np.random.default_rng(1).standard_normal((5, 3))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    write_embeddings(str(tmp_path / "a"), list("abcde"), X, {})
    _, Y, meta = read_embeddings(str(tmp_path / "a"))
    assert meta["normalized"] is True and Y.dtype == np.float32
    write_embeddings(str(tmp_path / "b"), list("abcde"), X, {"normalized": False})
    assert read_embeddings(str(tmp_path / "b"))[2]["normalized"] is False


def test_artifact_empty(tmp_path):
    write_embeddings(str(tmp_path / "e"), [], np.zeros((0, 4), np.float32), {})
    names, Y, meta = read_embeddings(str(tmp_path / "e"))
    assert names == [] and Y.shape == (0, 4) and meta["count"] == 0


def test_artifact_validation_errors(tmp_path):
    with pytest.raises(ValueError, match="2 embeddings but 3 filenames"):
        write_embeddings(str(tmp_path / "x"), ["a", "b", "c"], np.zeros((2, 4)), {})
    with pytest.raises(KurateError, match="no meta.json"):
        read_embeddings(str(tmp_path / "missing"))

    out = str(tmp_path / "emb")
    write_embeddings(out, ["a", "b"], np.ones((2, 3)), {})
    with open(os.path.join(out, "filenames.csv"), "a") as fh:
        fh.write("c\n")
    with pytest.raises(KurateError, match="3 filenames, 2 embeddings"):
        read_embeddings(out)

    meta_path = os.path.join(out, "meta.json")
    meta = json.loads(open(meta_path).read())
    meta["format"] = "something/else"
    open(meta_path, "w").write(json.dumps(meta))
    with pytest.raises(KurateError, match="unknown embeddings format"):
        read_embeddings(out)


# --------------------------------------------------------------------------- Lightly CSV


def test_lightly_csv_bytes_identical_to_lightly(tmp_path):
    X = _matrix(len(WEIRD_NAMES), 6)
    labels = list(range(len(WEIRD_NAMES)))
    theirs, ours = tmp_path / "theirs.csv", tmp_path / "ours.csv"
    save_embeddings(str(theirs), X, labels, WEIRD_NAMES)
    write_lightly_csv(str(ours), WEIRD_NAMES, X, labels)
    assert ours.read_bytes() == theirs.read_bytes()
    # default labels are 0, like lightly-embed on a flat folder
    save_embeddings(str(theirs), X, [0] * len(WEIRD_NAMES), WEIRD_NAMES)
    write_lightly_csv(str(ours), WEIRD_NAMES, X)
    assert ours.read_bytes() == theirs.read_bytes()


def test_read_lightly_written_csv_exactly(tmp_path):
    X = _matrix(40, 32, seed=3)
    names = WEIRD_NAMES + [f"img_{i:03d}.jpg" for i in range(40 - len(WEIRD_NAMES))]
    labels = [i % 3 for i in range(40)]
    path = tmp_path / "lightly.csv"
    save_embeddings(str(path), X, labels, names)
    got_names, got_X, got_labels = read_lightly_csv(str(path))
    assert got_names == names
    assert got_X.dtype == np.float32
    np.testing.assert_array_equal(got_X, X)  # shortest float32 text round-trips exactly
    assert got_labels.tolist() == labels


def test_lightly_reads_ours_and_round_trip(tmp_path):
    X = _matrix(len(WEIRD_NAMES), 5, seed=4)
    path = tmp_path / "ours.csv"
    write_lightly_csv(path, WEIRD_NAMES, X, labels=[7] * len(WEIRD_NAMES))  # PathLike accepted
    emb, labels, filenames = load_embeddings(str(path))
    assert filenames == WEIRD_NAMES and labels == [7] * len(WEIRD_NAMES)
    np.testing.assert_array_equal(emb.astype(np.float32), X)

    names, Y, lab = read_lightly_csv(str(path))
    assert names == WEIRD_NAMES and lab.tolist() == [7] * len(WEIRD_NAMES)
    np.testing.assert_array_equal(Y, X)


def test_write_lightly_csv_to_file_handle_and_chunks(tmp_path, monkeypatch):
    import kurate.io.embeddings_io as eio

    monkeypatch.setattr(eio, "_CHUNK_ROWS", 3)  # several chunks on both write and read
    X = _matrix(11, 4, seed=5)
    names = [f"n{i}" for i in range(11)]
    buf = io.StringIO(newline="")
    write_lightly_csv(buf, names, X)
    path = tmp_path / "h.csv"
    path.write_bytes(buf.getvalue().encode())
    got_names, Y, _ = read_lightly_csv(str(path))
    assert got_names == names
    np.testing.assert_array_equal(Y, X)
    assert buf.getvalue().count("\r\n") == 12


def test_write_lightly_csv_is_atomic(tmp_path):
    path = tmp_path / "e.csv"
    write_lightly_csv(str(path), ["a", "b"], np.ones((2, 2)))
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_lightly_csv(str(path), ["a", None], np.zeros((2, 2)))  # fails half-way through the rows
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["e.csv"]  # no temporary file left behind


def test_read_lightly_csv_extra_columns_and_missing_labels(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text(
        "filenames,embedding_0,embedding_1,masked,labels\r\na.jpg,1.5,-2,0,3\r\nb.jpg,0,1e-05,1,4\r\n"
    )
    names, X, labels = read_lightly_csv(str(p))
    assert names == ["a.jpg", "b.jpg"] and labels.tolist() == [3, 4]
    np.testing.assert_array_equal(X, np.array([[1.5, -2], [0, 1e-5]], np.float32))

    p.write_text("filenames,embedding_0\na.jpg,0.25\n")
    names, X, labels = read_lightly_csv(str(p))
    assert names == ["a.jpg"] and X.tolist() == [[0.25]] and labels.tolist() == [0]

    p.write_text("filenames,embedding_0,embedding_1,labels\r\n")
    names, X, labels = read_lightly_csv(str(p))
    assert names == [] and X.shape == (0, 2) and labels.shape == (0,)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"line 1: empty file"),
        ("name,embedding_0,labels\na,1,0\n", r"line 1: first column must be 'filenames'"),
        ("filenames,feature_0,labels\na,1,0\n", r"line 1: no 'embedding_<i>' columns"),
        ("filenames,embedding_0,embedding_1,labels\na,1,2,0\nb,1,0\n", r"line 3: expected 4 fields.*got 3"),
        ("filenames,embedding_0,labels\na,1,0\n\nb,2,0\n", r"line 3: .*empty row"),
        (
            "filenames,embedding_0,embedding_1,labels\na,1,2,0\nb,1,oops,0\n",
            r"line 3: column 'embedding_1'.*'oops'",
        ),
        ("filenames,embedding_0,labels\na,1,0\nb,2,x\n", r"line 3: column 'labels' is not an integer"),
        ('filenames,embedding_0,labels\n"multi\nline",1,0\nc,,0\n', r"line 4: column 'embedding_0'.*''"),
    ],
)
def test_read_lightly_csv_malformed(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_bytes(text.encode())
    with pytest.raises(KurateError, match=match):
        read_lightly_csv(str(p))


def test_read_lightly_csv_missing_file(tmp_path):
    with pytest.raises(KurateError, match="does not exist"):
        read_lightly_csv(str(tmp_path / "nope.csv"))


def test_lightly_table_keeps_every_other_column_as_text(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text(
        "filenames,embedding_0,masked,embedding_1,selected,score,note,labels\r\n"
        "a.jpg,1,0,2,1,0.5,hi,3\r\nb.jpg,3,1,4,0,,x,4\r\n"
    )
    t = read_lightly_table(str(p))
    assert t.names == ["a.jpg", "b.jpg"] and t.labels.tolist() == [3, 4]
    np.testing.assert_array_equal(t.embeddings, np.array([[1, 2], [3, 4]], np.float32))
    assert t.extra == {
        "masked": ["0", "1"],
        "selected": ["1", "0"],
        "score": ["0.5", ""],
        "note": ["hi", "x"],
    }
    assert flag_column("x", "masked", t.extra["masked"]).tolist() == [0, 1]
    np.testing.assert_array_equal(number_column(t.extra["score"]), [0.5, np.nan])
    assert number_column(t.extra["note"]) is None
    with pytest.raises(KurateError, match=r"x.csv, line 3: column 'masked' must be 0 or 1, got '2'"):
        flag_column(str(p), "masked", ["1", "2"])
    p.write_text("filenames,embedding_0,masked,masked\r\na,1,0,1\r\n")
    with pytest.raises(KurateError, match="column 'masked' appears more than once"):
        read_lightly_table(str(p))


def test_artifact_columns_are_kept_with_the_rows(tmp_path):
    names = ["a", "b", "c"]
    x = np.zeros((3, 2), np.float32)
    path = str(tmp_path / "emb")
    write_embeddings(path, names, x, {}, {"masked": np.array([0, 1, 0], np.uint8), "s": [0.5, 1.0, 2.0]})
    cols = read_columns(path)
    assert cols["masked"].dtype == np.uint8 and cols["masked"].tolist() == [0, 1, 0]
    assert cols["s"].tolist() == [0.5, 1.0, 2.0]
    write_embeddings(str(tmp_path / "plain"), names, x)
    assert read_columns(str(tmp_path / "plain")) == {}
    with pytest.raises(ValueError, match="column 'bad': expected 3 numbers"):
        write_embeddings(str(tmp_path / "bad"), names, x, {}, {"bad": [1, 2]})
