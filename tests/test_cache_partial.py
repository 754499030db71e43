"""Crop cache after a box change: only the crops whose square changed are re-cut, the others
keep their bytes, open readers keep theirs, and a kill anywhere in the partial rebuild leaves
nothing claiming to be complete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcss_studio.core import cache as cache_module
from mcss_studio.core.cache import CropCache, build_cache, crop_squares, crops_dir
from mcss_studio.core.errors import UserInputError
from tests import faultlib
from tests.test_boxes import make_seq
from tests.test_cache import T, direct_crop, given_boxes, videos

EDITED = (4, 6, 9)  # frames of camera 0 whose box the user corrects


@pytest.fixture
def seq(tmp_path: Path):
    for i in range(2):
        (tmp_path / f"cam{i}.mp4").write_bytes(b"stand-in for the video file")
    return make_seq(tmp_path, videos())


def edited_boxes() -> np.ndarray:
    b = given_boxes()
    for t in EDITED:
        b[0, t] += (3, -2, 5, 1)  # moved and widened: a different square
    return b


def crop_bytes(folder: Path, c: int, t: int, size: int = 16) -> bytes:
    n = size * size * 3
    return (folder / f"{c}.u8").read_bytes()[t * n:(t + 1) * n]


def counting_cuts(monkeypatch) -> list[tuple[int, ...]]:
    cuts: list[tuple[int, ...]] = []
    real = cache_module.crop_square

    def counted(frame, square, size):
        cuts.append(tuple(int(v) for v in square))
        return real(frame, square, size)

    monkeypatch.setattr(cache_module, "crop_square", counted)
    return cuts


def test_three_edited_boxes_recut_three_crops_and_leave_the_rest(seq, tmp_path, monkeypatch):
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    folder = crops_dir(tmp_path / "c", seq)
    before = {(c, t): crop_bytes(folder, c, t) for c in range(2) for t in range(T)}
    cuts = counting_cuts(monkeypatch)
    decoded = []
    cache = build_cache(seq, tmp_path / "c", crop_size=16, boxes=edited_boxes(), proxies=False,
                        progress=lambda d, n: decoded.append((d, n)))
    assert len(cuts) == 3  # one cut per edited box
    assert decoded[-1] == (EDITED[-1] - EDITED[0] + 1,) * 2  # decoded from 4 to 9 only
    squares = crop_squares(edited_boxes(), 0.2, [(64, 48), (40, 60)], 16)
    np.testing.assert_array_equal(cache.boxes, squares)
    np.testing.assert_array_equal(cache.person_boxes, edited_boxes())
    for c in range(2):
        for t in range(T):
            if c == 0 and t in EDITED:
                assert crop_bytes(folder, c, t) != before[(c, t)]
                np.testing.assert_array_equal(cache.get(c, t),
                                              direct_crop(videos()[c][t], squares[c, t], 16))
            else:
                assert crop_bytes(folder, c, t) == before[(c, t)], (c, t)
    # the same boxes again: nothing to cut, the cache is complete as it is
    cuts.clear()
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=edited_boxes(), proxies=False)
    assert cuts == []


def test_a_box_change_that_keeps_the_square_recuts_nothing(seq, tmp_path, monkeypatch):
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    nudged = given_boxes()
    nudged[1, 2] += 1e-9  # a different box, the same integer square
    cuts = counting_cuts(monkeypatch)
    cache = build_cache(seq, tmp_path / "c", crop_size=16, boxes=nudged, proxies=False)
    assert cuts == [] and cache.meta["complete"]
    np.testing.assert_array_equal(cache.person_boxes, nudged)


def test_an_open_cache_keeps_its_pixels_and_squares_through_a_partial_rebuild(seq, tmp_path):
    old = build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    old_crop, old_square = np.array(old.get(0, 6)), np.array(old.boxes[0, 6])
    new = build_cache(seq, tmp_path / "c", crop_size=16, boxes=edited_boxes(), proxies=False)
    assert not np.array_equal(new.get(0, 6), old_crop)
    np.testing.assert_array_equal(old.get(0, 6), old_crop)  # its own file, not the new pixels
    np.testing.assert_array_equal(old.boxes[0, 6], old_square)
    np.testing.assert_array_equal(old.get(0, 6), direct_crop(videos()[0][6], old_square, 16))


def test_other_settings_still_rebuild_everything(seq, tmp_path, monkeypatch):
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    cuts = counting_cuts(monkeypatch)
    build_cache(seq, tmp_path / "c", crop_size=16, margin=0.3, boxes=edited_boxes(),
                proxies=False)
    assert len(cuts) == 2 * T


def _check_after_kill(seq, cache_dir: Path) -> None:
    """Complete means right: a cache that opens has every crop cut with its own square, and
    those squares are the old or the new ones, whole; then the build resumes to the new."""
    squares_new = crop_squares(edited_boxes(), 0.2, [(64, 48), (40, 60)], 16)
    squares_old = crop_squares(given_boxes(), 0.2, [(64, 48), (40, 60)], 16)
    try:
        cache = CropCache.open(cache_dir, seq)
    except UserInputError as exc:
        assert "incomplete" in str(exc) or "rebuilt" in str(exc), exc
    else:
        assert (np.array_equal(cache.boxes, squares_old)
                or np.array_equal(cache.boxes, squares_new))
        for c in range(2):
            for t in range(T):
                np.testing.assert_array_equal(
                    cache.get(c, t), direct_crop(videos()[c][t], cache.boxes[c, t], 16))
        cache.close()
    cache = build_cache(seq, cache_dir, crop_size=16, boxes=edited_boxes(), proxies=False)
    np.testing.assert_array_equal(cache.boxes, squares_new)
    for c in range(2):
        for t in range(T):
            np.testing.assert_array_equal(cache.get(c, t),
                                          direct_crop(videos()[c][t], squares_new[c, t], 16))


def test_a_kill_anywhere_in_a_partial_rebuild_never_claims_complete(seq, tmp_path):
    template = tmp_path / "template"
    build_cache(seq, template, crop_size=16, boxes=given_boxes(), proxies=False)

    def partial(cache_dir: Path) -> int:
        build_cache(seq, cache_dir, crop_size=16, boxes=edited_boxes(), proxies=False,
                    workers=1)
        return 0

    import shutil

    probe = tmp_path / "probe"
    shutil.copytree(template, probe)
    total = faultlib.run_child(lambda: partial(probe)).calls
    assert total > 10
    points = faultlib.kill_points(total, 14, seed=14)
    for k in points:
        folder = tmp_path / f"kill{k}"
        shutil.copytree(template, folder)
        out = faultlib.run_child(lambda folder=folder: partial(folder), kill_at=k)
        assert out.status in (0, -9), out
        _check_after_kill(seq, folder)
    assert len(points) >= 10


def test_media_never_serves_a_crop_cut_with_an_old_box(seq, tmp_path):
    from mcss_studio.core.media import MediaAccess

    seq.boxes = given_boxes()
    build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    media = MediaAccess(seq, tmp_path / "c")
    media.attach_caches()
    assert media.crops_current(16, 0.2)
    media.set_person_boxes(edited_boxes())  # corrected; the cache still has the old crops
    assert not media.crops_current(16, 0.2)
    squares = crop_squares(edited_boxes(), 0.2, [(64, 48), (40, 60)], 16)
    crops, regions = media.crops(6, 16, 0.2)
    np.testing.assert_array_equal(regions, squares[:, 6])
    for c in range(2):
        np.testing.assert_array_equal(crops[c], direct_crop(videos()[c][6], squares[c, 6], 16))
    np.testing.assert_array_equal(media.crop(0, 4, 16, 0.2),
                                  direct_crop(videos()[0][4], squares[0, 4], 16))
    media.build_caches(crop_size=16, margin=0.2)
    media.attach_caches()
    assert media.crops_current(16, 0.2)
    np.testing.assert_array_equal(media.crop_cache.boxes, squares)


def test_the_same_boxes_given_or_from_the_box_file_share_one_cache(seq, tmp_path, monkeypatch):
    """The Studio passes the boxes it shows, a trainer asks for "auto" (the box file): the same
    values are the same cache, reused without a write."""
    seq.boxes = given_boxes()
    build_cache(seq, tmp_path / "c", crop_size=16, proxies=False)  # auto: the file's boxes
    meta = crops_dir(tmp_path / "c", seq) / "meta.json"
    written = meta.stat().st_ino
    cuts = counting_cuts(monkeypatch)
    cache = build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(), proxies=False)
    build_cache(seq, tmp_path / "c", crop_size=16, proxies=False)
    assert cuts == [] and meta.stat().st_ino == written  # not even meta.json rewritten
    assert cache.meta["box_method"] == "file"


def test_a_read_that_began_without_a_cache_cuts_from_the_frame_if_one_is_attached_meanwhile(
        seq, tmp_path):
    """`crops` takes the attached cache once; a build attaching one after that (the player's
    race) must not make the same read use a cache it does not hold."""
    from mcss_studio.core.media import MediaAccess

    seq.boxes = given_boxes()
    media = MediaAccess(seq, tmp_path / "c")
    media.crop_cache = build_cache(seq, tmp_path / "c", crop_size=16, boxes=given_boxes(),
                                   proxies=False)  # attached after the read took None
    region = media._regions(None, 6, 16, 0.2)
    crop = media._crop(None, 0, 6, 16, 0.2, region[0])
    np.testing.assert_array_equal(crop, direct_crop(videos()[0][6], region[0], 16))
    seq.boxes = None
    bare = MediaAccess(seq, tmp_path / "c")
    bare.crop_cache = media.crop_cache
    assert bare._regions(None, 6, 16, 0.2).shape == (2, 4)
