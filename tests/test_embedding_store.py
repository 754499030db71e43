"""The embedding index on disk: keyed by checkpoint and crops, resumable, never used damaged."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from mcss_studio.core import embedding_store, open_dataset, video_index
from mcss_studio.core.checkpoint import checkpoint_digest
from mcss_studio.core.embedding_store import (
    StaleIndexError,
    build_index,
    crop_of,
    index_folder,
    open_index,
)
from mcss_studio.core.pipeline import PosePipeline
from mcss_studio.core.video_index import forget_video_indexes
from tests.gui_fixtures import make_checkpoint, make_recording
from tests.videofixtures import count_container_opens

FRAMES = 20


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    data = make_recording(root / "rec", frames=FRAMES)
    ckpt = make_checkpoint(root / "a.safetensors")
    return data, ckpt, root


class CountingPipeline:
    """The real pipeline, counting the frames it embeds and noting the threads that cut the
    crops and ran the model."""

    def __init__(self, ckpt: Path) -> None:
        self.inner = PosePipeline.load(ckpt, "cpu")
        self.contract = self.inner.contract
        self.frames = 0
        self.cut_in, self.predicted_in = set(), set()

    def cut_frames(self, media, frames):
        self.cut_in.add(threading.current_thread().name)
        return self.inner.cut_frames(media, frames)

    def predict_cut(self, cut, place=True):
        self.predicted_in.add(threading.current_thread().name)
        self.frames += len(cut.frames)
        return self.inner.predict_cut(cut, place)


def build(data, cache, ckpt, pipeline=None, progress=None):
    return build_index(open_dataset(data), cache, ckpt, progress=progress, pipeline=pipeline)


def test_built_index_matches_the_pipeline_and_reopens_without_work(inputs, tmp_path):
    data, ckpt, _ = inputs
    counting = CountingPipeline(ckpt)
    index = build(data, tmp_path, ckpt, counting)
    assert len(index) == 3 * FRAMES and counting.frames == FRAMES
    seq = open_dataset(data).open(index.sequences[0].name)
    from mcss_studio.core.media import MediaAccess

    media = MediaAccess(seq, tmp_path)
    media.attach_caches()
    direct = counting.inner.predict_frame(media, 7)
    for cam in range(3):
        row = index.row(index.sequences[0].name, cam, 7)
        np.testing.assert_allclose(index.embeddings[row], direct.embedding[cam], atol=1e-5)
        np.testing.assert_array_equal(crop_of(index, row), media.crops(7, 32, 0.2)[0][cam])
    media.close()
    # the crops were cut in a thread of their own, beside the model's
    assert counting.cut_in == {"embedding-crops"}
    assert counting.predicted_in == {threading.current_thread().name}
    again = CountingPipeline(ckpt)
    reopened = build(data, tmp_path, ckpt, again)
    assert again.frames == 0
    np.testing.assert_array_equal(reopened.embeddings, index.embeddings)


def test_videos_are_demuxed_once_and_never_by_the_next_build(inputs, tmp_path, monkeypatch):
    """Planning and embedding open every sequence, but each video is demuxed only by the
    first open of the first build; a later build in a new process (another checkpoint) takes
    the stream indexes the cache folder keeps and, the crops cached, opens no video at all."""
    data, ckpt, root = inputs
    forget_video_indexes()
    opened = count_container_opens(monkeypatch)
    first = build(data, tmp_path, ckpt)
    assert len(opened) == 3  # one per camera
    forget_video_indexes()  # a new process
    other = make_checkpoint(root / "c.safetensors", meta={"note": "a later run"})
    later = build(data, tmp_path, other, CountingPipeline(other))
    assert len(opened) == 3 and len(later) == len(first)
    forget_video_indexes()
    (tmp_path / video_index.FILE_NAME).write_bytes(b"damaged")
    shutil.rmtree(index_folder(tmp_path, checkpoint_digest(other)))
    again = build(data, tmp_path, other)  # the damaged file is ignored, and written anew
    assert len(opened) == 6
    np.testing.assert_array_equal(again.embeddings, later.embeddings)
    forget_video_indexes()
    assert video_index.remember_video_indexes(tmp_path) == 3


def test_an_index_over_crops_cut_in_another_process_demuxes_no_video(inputs, tmp_path,
                                                                      monkeypatch):
    """The crop cache build keeps the stream indexes of the videos it cut: the first index
    build over those crops, in a new process, opens no video container at all."""
    from mcss_studio.core.cache import build_cache

    data, ckpt, _ = inputs
    pipeline = PosePipeline.load(ckpt, "cpu")
    forget_video_indexes()
    dataset = open_dataset(data)
    with dataset.open(dataset.names[0]) as seq:
        build_cache(seq, tmp_path, crop_size=pipeline.contract.crop_size,
                    margin=pipeline.contract.crop_margin, proxies=False).close()
    forget_video_indexes()  # the index is built in another process
    opened = count_container_opens(monkeypatch)
    index = build(data, tmp_path, ckpt, pipeline)
    assert opened == [] and len(index) == 3 * FRAMES
    forget_video_indexes()


def test_another_checkpoint_gets_its_own_index(inputs, tmp_path):
    data, ckpt, root = inputs
    build(data, tmp_path, ckpt)
    other = make_checkpoint(root / "b.safetensors", meta={"note": "another"})
    counting = CountingPipeline(other)
    index = build(data, tmp_path, other, counting)
    assert counting.frames == FRAMES  # computed, not the first checkpoint's
    assert index.checkpoint == checkpoint_digest(other) != checkpoint_digest(ckpt)
    assert (index_folder(tmp_path, checkpoint_digest(ckpt)) / "meta.json").is_file()


def test_changed_crops_make_the_index_stale(inputs, tmp_path):
    data, ckpt, root = inputs
    copy = make_recording(root / "rec_touch", frames=FRAMES)
    build(copy, tmp_path, ckpt)
    video = next(copy.glob("*.mp4"))
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the video "changed"
    counting = CountingPipeline(ckpt)
    build(copy, tmp_path, ckpt, counting)
    assert counting.frames == FRAMES


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_file_is_detected_and_rebuilt(inputs, tmp_path, damage):
    data, ckpt, _ = inputs
    first = np.array(build(data, tmp_path, ckpt).embeddings)
    folder = index_folder(tmp_path, checkpoint_digest(ckpt))
    path = folder / ("embeddings.f32" if damage == "flip" else "poses.f32")
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[100] ^= 0xFF
        path.write_bytes(bytes(raw))
    else:
        path.write_bytes(bytes(raw[:-8]))
    with pytest.raises(StaleIndexError):
        open_index(folder)
    counting = CountingPipeline(ckpt)
    rebuilt = build(data, tmp_path, ckpt, counting)
    assert counting.frames == FRAMES
    np.testing.assert_allclose(rebuilt.embeddings, first, atol=1e-6)


def test_killed_build_resumes_from_whole_chunks(inputs, tmp_path, monkeypatch):
    data, ckpt, _ = inputs
    monkeypatch.setattr(embedding_store, "CHUNK_FRAMES", 4)  # 5 chunks of the 20 frames

    def stop_after_two_chunks(done, total):
        if total and done >= 8:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        build(data, tmp_path, ckpt, progress=stop_after_two_chunks)
    folder = index_folder(tmp_path, checkpoint_digest(ckpt))
    assert not (folder / "meta.json").exists()  # nothing claims to be complete
    with pytest.raises(StaleIndexError):
        open_index(folder)
    chunks = sorted((folder / "chunks").glob("*.npz"))
    assert len(chunks) == 2
    chunks[1].write_bytes(chunks[1].read_bytes()[:50])  # as if killed mid-write, unrenamed
    counting = CountingPipeline(ckpt)
    index = build(data, tmp_path, ckpt, counting)
    assert counting.frames == FRAMES - 4  # chunk 0 kept; the damaged one and the rest redone
    assert len(index) == 3 * FRAMES and not (folder / "chunks").exists()
    fresh = build(data, tmp_path / "fresh", ckpt)
    np.testing.assert_allclose(index.embeddings, fresh.embeddings, atol=1e-6)


def test_an_error_while_cutting_crops_stops_the_build_and_its_thread(inputs, tmp_path,
                                                                      monkeypatch):
    from mcss_studio.core.errors import UserInputError

    data, ckpt, _ = inputs
    monkeypatch.setattr(embedding_store, "CHUNK_FRAMES", 4)
    counting = CountingPipeline(ckpt)
    cut = counting.cut_frames

    def failing_third(media, frames):
        if frames[0] == 8:
            raise UserInputError(media.sequence.path, "cannot read frame 8")
        return cut(media, frames)

    counting.cut_frames = failing_third
    with pytest.raises(UserInputError, match="cannot read frame 8"):
        build(data, tmp_path, ckpt, counting)
    assert counting.frames == 8  # the two chunks before it were embedded and kept
    assert len(list((index_folder(tmp_path, checkpoint_digest(ckpt)) / "chunks").glob(
        "*.npz"))) == 2
    assert not any(t.name == "embedding-crops" for t in threading.enumerate())


def test_a_cancelled_build_stops_the_cutting_thread(inputs, tmp_path, monkeypatch):
    data, ckpt, _ = inputs
    monkeypatch.setattr(embedding_store, "CHUNK_FRAMES", 2)  # 10 chunks: the cutter is ahead

    def cancel(done, total):
        if total and done >= 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        build(data, tmp_path, ckpt, progress=cancel)
    assert not any(t.name == "embedding-crops" for t in threading.enumerate())
