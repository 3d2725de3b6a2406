"""The file half of a peer connection: streaming a file out, and taking one in.

A mixin of `PeerProtocol` (kept apart so each file holds one concern).  Outgoing files queue
and go one at a time, each body streamed by a push producer; frames written meanwhile are held
and follow the body.  Incoming bodies go to a `FileReceiver`; the ack is a `reply` sent only
after the file is checked, fsynced and renamed (in a thread).
"""

from __future__ import annotations

import hashlib
import os

from twisted.internet.defer import Deferred

from anylog_tw.base.registry import grant_allows
from anylog_tw.base.reply import Reply
from anylog_tw.net import wire
from anylog_tw.net.transfer import (
    FileProducer,
    FileReceiver,
    TransferError,
    check_file_name,
    check_md5,
    destination_dir,
    file_destinations,
)

SMALL_READ = 64 * 1024  # Twisted's default; big reads slow down small messages
BULK_READ = 1024 * 1024  # while a file body arrives
THREADED = 1024 * 1024  # files from this size on are hashed and written on a worker thread


class FileChannel:
    """File sending and receiving for PeerProtocol (which provides _write, _send_reply, _gate ...)."""

    def send_file(self, f, size: int, md5: str | None, dest: str, name: str, timeout: float | None) -> Deferred:
        """Stream an open file; the Deferred fires with the receiver's ack Reply.

        Without `md5`, the file is hashed as it streams and the digest follows the body in a
        trailer frame, so the file is read once and the hashing overlaps the transfer.
        """
        ident, d = self._new_request(timeout)
        header = {"kind": "file", "id": ident, "name": name, "size": size, "dest": dest}
        if md5 is not None:
            header["md5"] = md5
        self._files.append((header, f))
        if not self._streaming:
            self._next_file()
        return d

    def _next_file(self) -> None:
        while self._files:
            header, f = self._files.popleft()
            if header["id"] not in self._waiting:  # timed out while queued
                f.close()
                continue
            self.requests_out += 1
            self.transport.write(wire.encode_header(header))
            self._streaming = True
            hasher = hashlib.md5() if "md5" not in header else None
            self._sending = (header["id"], hasher)
            FileProducer(f, header["size"], self.transport, self._file_sent, hasher=hasher, reactor=self.clock).start()
            return

    def _file_sent(self, error: str | None) -> None:
        self._streaming = False
        if error is not None:
            # The receiver expects bytes that will never come: the stream cannot continue.
            self._closed_reason = error
            self.transport.abortConnection()
            return
        ident, hasher = self._sending
        self._sending = None
        if hasher is not None:
            self.transport.write(wire.encode_header({"kind": "file", "id": ident, "trailer": True,
                                                     "md5": hasher.hexdigest()}))
        held, self._held = self._held, []
        self._held_bytes = 0
        if held:
            self.transport.writeSequence(held)
        if self._files:
            self.clock.callLater(0, self._resume_files)

    def _resume_files(self) -> None:
        if not self._streaming and self.open:
            self._next_file()

    # -- receiving files ---------------------------------------------------------------------

    def _file_start(self, header: dict) -> None:
        if not self._gate("file"):
            return
        self._refusal = None
        self.transport.bufferSize = BULK_READ
        try:
            name = check_file_name(header.get("name"))
            md5 = check_md5(header["md5"]) if "md5" in header else None
            if not grant_allows(self.grant, "write"):
                raise TransferError(f"receiving files needs the 'write' grant; peers of this node hold "
                                    f"'{self.grant}' (run tcp server ... and peer grant = write)")
            dirs = file_destinations(self.node.dirs)  # the node's one snapshot of its work directories
            dest = destination_dir(dirs, header.get("dest"))
            self._receiving = FileReceiver(dest, name, header.get("size", 0), md5, dirs.tmp)
            if header.get("size", 0) >= THREADED:
                self._receiving.use_worker(self.clock, lambda: self.reading.hold("disk"),
                                           lambda: self.reading.release("disk"), self.budget)
        except TransferError as e:
            self._refusal = e.reason
        except OSError as e:
            self._refusal = f"cannot create the file: {e.strerror}"

    def _file_chunk(self, chunk: bytes) -> None:
        if self._receiving is None:
            return  # refused: the body is read and dropped
        try:
            self._receiving.write(chunk)
        except (OSError, TransferError) as e:
            self._refusal = getattr(e, "reason", None) or f"writing the file failed: {e}"
            self._receiving.discard_later()
            self._receiving = None

    def _file_end(self, header: dict) -> None:
        self.transport.bufferSize = SMALL_READ
        ident = header["id"]
        receiver, self._receiving = self._receiving, None
        if receiver is None:
            reason = self._refusal or "refused"
            self._file_refused(header, reason)
            return
        if receiver.md5 is None:
            self._awaiting_md5[ident] = (receiver, header)
            return
        self._finish_file(receiver, header)

    def _file_trailer(self, header: dict) -> None:
        """The md5 of a body that has just arrived."""
        if not self._gate("file"):
            return
        if header.get("size"):
            return self._refuse("a file trailer with a body", "bad_frame")
        receiver, original = self._awaiting_md5.pop(header["id"], (None, None))
        if receiver is None:
            return  # the file was refused already; the sender has its answer
        try:
            receiver.md5 = check_md5(header.get("md5"))
        except TransferError as e:
            receiver.discard_later()
            return self._file_refused(original, e.reason)
        self._finish_file(receiver, original)

    def _finish_file(self, receiver: FileReceiver, header: dict) -> None:
        ident = header["id"]
        self.requests_in += 1
        d = receiver.complete(self.clock)

        def done(path):
            self.log.info("received {name} ({size} bytes) from {peer} into {path}", name=header.get("name"),
                          size=header.get("size"), peer=self.label, path=path)
            self._send_reply(Reply.of_text(f"received {os.path.basename(path)} ({header.get('size')} bytes)"),
                             ident)

        def failed(f):
            reason = f.value.reason if f.check(TransferError) else f"writing the file failed: {f.getErrorMessage()}"
            self._file_refused(header, reason)

        d.addCallbacks(done, failed)

    def _file_refused(self, header: dict, reason: str) -> None:
        self.log.warn("refused file {name} from {peer}: {reason}", name=header.get("name"), peer=self.label,
                      reason=reason)
        self.node.errors.add(f"peer {self.label}", f"file {header.get('name')}", reason)
        self._send_reply(Reply.of_error(f"peer refused file {header.get('name')}: {reason}", "transfer"),
                         header["id"])
