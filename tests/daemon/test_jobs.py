"""JobManager: one job per hash, FIFO concurrency limit, statuses (fake uploader, real asyncio)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kachery_resource.daemon.jobs import JobManager
from kachery_resource.errors import FileChangedError, UploadFailedError
from kachery_resource.messages import UploadState
from kachery_resource.store import LocalFile

H = [f"{i:040x}" for i in range(1, 11)]


class FakeUploader:
    def __init__(self, in_bucket: set[str] | None = None, fail: set[str] | None = None) -> None:
        self.in_bucket = in_bucket or set()
        self.fail = fail or set()
        self.started: list[str] = []
        self.asked: list[str] = []
        self.release = asyncio.Event()
        self.running = 0
        self.max_running = 0

    async def is_in_bucket(self, sha1: str) -> bool:
        self.asked.append(sha1)
        await asyncio.sleep(0)
        return sha1 in self.in_bucket

    async def upload(self, local: LocalFile, progress: Callable[[int], None]) -> bool:
        if local.sha1 in self.in_bucket:  # the gateway's initiate: alreadyExists
            progress(local.size)
            return False
        self.started.append(local.sha1)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            progress(local.size // 2)
            await self.release.wait()
            if local.sha1 in self.fail:
                raise UploadFailedError("bucket said no")
            progress(local.size - local.size // 2)
        finally:
            self.running -= 1
        return True


def resolver(known: dict[str, int], changed: set[str] | None = None):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    async def resolve(sha1: str) -> LocalFile | None:
        calls.append(sha1)
        await asyncio.sleep(0.01)
        if changed and sha1 in changed:
            raise FileChangedError(f"linked file /x for sha1://{sha1} changed")
        if sha1 not in known:
            return None
        return LocalFile(sha1, Path("/x") / sha1, known[sha1], 0.0, linked=False)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``condition()`` holds (the machine may be loaded: no fixed sleeps)."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_hundred_concurrent_requests_make_one_upload() -> None:
    up = FakeUploader()
    resolve = resolver({H[0]: 1000})
    jobs = JobManager(resolve, up, 2)
    waiters = [asyncio.create_task(jobs.request(H[0], 5)) for _ in range(100)]
    await until(lambda: bool(up.started))
    await asyncio.sleep(0.05)  # every waiter has had its turn
    assert up.started == [H[0]]
    assert resolve.calls == [H[0]]
    up.release.set()
    statuses = await asyncio.gather(*waiters)
    assert {s.status for s in statuses} == {UploadState.COMPLETED}
    assert statuses[0].bytesUploaded == 1000 and statuses[0].size == 1000
    # later polls are answered from the completed job, no second upload
    again = await jobs.request(H[0], 1)
    assert again.status is UploadState.COMPLETED and up.started == [H[0]]
    await jobs.close()


async def test_running_status_has_live_bytes_and_times_out_with_the_request() -> None:
    up = FakeUploader()
    jobs = JobManager(resolver({H[0]: 1000}), up, 1)
    status = await jobs.request(H[0], 0.1)
    assert status.status is UploadState.RUNNING
    assert status.bytesUploaded == 500 and status.size == 1000
    assert status.timestampRequested and status.timestampStarted
    up.release.set()
    assert (await jobs.request(H[0], 2)).status is UploadState.COMPLETED
    await jobs.close()


async def test_concurrency_limit_and_fifo_order() -> None:
    up = FakeUploader()
    jobs = JobManager(resolver({h: 10 for h in H}), up, 2)
    for h in H:
        jobs.ensure_job(h)
        await asyncio.sleep(0.02)  # arrive in order
    assert up.running == 2 and up.started == H[:2]
    assert (await jobs.request(H[5], 0)).status is UploadState.QUEUED
    up.release.set()
    results = await asyncio.gather(*(jobs.request(h, 5) for h in H))
    assert all(r.status is UploadState.COMPLETED for r in results)
    assert up.max_running == 2 and jobs.max_running_seen == 2
    assert up.started == H  # first come, first served
    await jobs.close()


async def test_in_bucket_completes_without_upload_and_not_found() -> None:
    up = FakeUploader(in_bucket={H[0]})
    jobs = JobManager(resolver({H[0]: 5}), up, 1)
    assert (await jobs.request(H[0], 1)).status is UploadState.COMPLETED
    nf = await jobs.request(H[1], 1)
    assert nf.status is UploadState.NOT_FOUND and nf.size is None
    assert up.started == []
    await jobs.close()


async def test_bucket_is_asked_first_only_when_the_job_must_wait_for_a_slot() -> None:
    up = FakeUploader(in_bucket={H[1]})
    jobs = JobManager(resolver({H[0]: 5, H[1]: 5, H[2]: 5}), up, 1)
    busy = asyncio.create_task(jobs.request(H[0], 5))
    await until(lambda: bool(up.started))
    assert up.started == [H[0]] and up.asked == []  # a free slot: straight to the upload
    # the slot is taken: the bucket is asked, and a file it has does not wait in the queue
    there = await jobs.request(H[1], 1)
    assert there.status is UploadState.COMPLETED and there.bytesUploaded == 5
    assert up.asked == [H[1]]
    queued = await jobs.request(H[2], 0.05)
    assert queued.status is UploadState.QUEUED and up.asked == [H[1], H[2]]
    up.release.set()
    assert (await busy).status is UploadState.COMPLETED
    assert (await jobs.request(H[2], 5)).status is UploadState.COMPLETED
    assert up.started == [H[0], H[2]]
    await jobs.close()


async def test_changed_file_and_upload_failure_report_error_and_are_retried() -> None:
    up = FakeUploader(fail={H[1]})
    up.release.set()
    resolve = resolver({H[0]: 5, H[1]: 5}, changed={H[0]})
    jobs = JobManager(resolve, up, 1)
    changed = await jobs.request(H[0], 1)
    assert changed.status is UploadState.ERROR and "changed" in (changed.error or "")
    failed = await jobs.request(H[1], 1)
    assert failed.status is UploadState.ERROR and "bucket said no" in (failed.error or "")
    # errors are not cached: the next request looks again
    await jobs.request(H[1], 1)
    assert up.started == [H[1], H[1]]
    await jobs.close()


async def test_close_aborts_running_uploads() -> None:
    up = FakeUploader()
    jobs = JobManager(resolver({H[0]: 5}), up, 1)
    job = jobs.ensure_job(H[0])
    await until(lambda: job.state is UploadState.RUNNING)
    assert job.state is UploadState.RUNNING
    await jobs.close()
    assert job.state is UploadState.ERROR and up.running == 0


def test_max_concurrent_must_be_positive() -> None:
    with pytest.raises(ValueError):
        JobManager(resolver({}), FakeUploader(), 0)


async def test_absent_hash_answers_not_found_without_a_job() -> None:
    resolve = resolver({H[0]: 5})
    jobs = JobManager(resolve, FakeUploader(in_bucket={H[0]}), 1, is_absent=lambda h: h != H[0])
    assert (await jobs.request(H[1], 1)).status is UploadState.NOT_FOUND
    assert resolve.calls == [] and jobs.job(H[1]) is None
    assert (await jobs.request(H[0], 1)).status is UploadState.COMPLETED
    assert resolve.calls == [H[0]]
    await jobs.close()


@pytest.mark.parametrize("case", ["changed", "unreadable"])
async def test_remote_users_never_see_the_owners_paths(tmp_path: Path, kc_dir: Path,
                                                       case: str) -> None:
    from kachery_resource.store import LocalStore

    folder = tmp_path / "My Lab Data" / "secret project"
    folder.mkdir(parents=True)
    path = folder / "session 1.nwb"
    path.write_bytes(b"recording")
    store = LocalStore(kc_dir)
    sha1 = store.link(path)
    if case == "changed":
        path.write_bytes(b"recording, longer now")
    else:
        record = {"path": str(folder), "size": 9, "mtime": 0, "sha1": sha1}  # a directory
        store.link_record_path(sha1).write_text(json.dumps(record))

    async def resolve(h: str) -> LocalFile | None:
        return store.resolve(h)

    finished: list[str] = []
    jobs = JobManager(resolve, FakeUploader(), 2, on_finished=lambda j: finished.append(j.state))
    status = await jobs.request(sha1, 5)
    assert status.status == UploadState.ERROR
    error = str(status.error)
    assert str(tmp_path) not in error and "My Lab Data" not in error, error
    assert "session 1.nwb" in error or case == "unreadable"
    assert finished == [UploadState.ERROR]


def test_public_error_cuts_paths_but_not_urls() -> None:
    from kachery_resource.daemon.jobs import public_error

    assert public_error("gateway http://127.0.0.1:9/api/x refused sha1://ab") == \
        "gateway http://127.0.0.1:9/api/x refused sha1://ab"
    assert public_error("cannot read /home/ann/data/x.bin: denied") == "cannot read …/x.bin: denied"
    assert public_error("file '/srv/a b/c d.h5' changed") == "file '…/c d.h5' changed"
    path = Path("/home/ann/My Data/run 1.bin")
    assert public_error(f"{path} became shorter while being uploaded", path) == \
        "…/run 1.bin became shorter while being uploaded"


async def test_an_upload_error_naming_the_file_reaches_the_client_without_its_folder() -> None:
    path = Path("/home/ann/My Data/run 1.bin")

    class ShrinkingUploader(FakeUploader):
        async def upload(self, local: LocalFile, progress: Callable[[int], None]) -> bool:
            raise FileChangedError(f"{local.path} became shorter while being uploaded")

    async def resolve(sha1: str) -> LocalFile | None:
        return LocalFile(sha1, path, 10, 0.0, linked=True)

    status = await JobManager(resolve, ShrinkingUploader(), 1).request(H[0], 5)
    assert status.error == "file changed: …/run 1.bin became shorter while being uploaded"


@pytest.mark.parametrize(("text", "public"), [
    ("linked file '/home/al/my lab/x.nwb' was modified", "linked file '…/x.nwb' was modified"),
    ('linked file "/home/al/it\'s/x.nwb" changed', 'linked file "…/x.nwb" changed'),
    ("cannot open /data/a/b.dat now", "cannot open …/b.dat now"),
])
def test_public_errors_keep_only_the_file_name(text: str, public: str) -> None:
    from kachery_resource.daemon.jobs import public_error

    assert public_error(text) == public
