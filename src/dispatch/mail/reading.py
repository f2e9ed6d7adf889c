"""Reading a folder's new messages without changing anything, the size of each known before it is fetched.

`MailboxReader.new_messages(folder, last_uid)` opens the folder read-only (EXAMINE), asks the size of every
message with a UID above last_uid in one command (RFC822.SIZE), and fetches with BODY.PEEK[] only those
within `max_bytes`: a larger one is named, never downloaded. Nothing here sets a flag, moves or deletes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from dispatch.mail.imap import Fetched, Folder, ImapClient


@dataclass(frozen=True)
class TooLarge:
    """A message left unread because the server says it is larger than allowed."""

    uid: int
    size: int


_SIZE = re.compile(rb"^\d+ \((?=.*\bUID (?P<uid>\d+))(?=.*\bRFC822\.SIZE (?P<size>\d+))", re.DOTALL)


class MailboxReader(ImapClient):
    """An IMAP connection that reads folders the way `dispatch track` needs: new messages only, sizes first."""

    def sizes_after(self, folder: str, last_uid: int = 0) -> tuple[Folder, dict[int, int]]:
        """The folder (opened read-only) and {UID: size in bytes} of its messages with a UID above last_uid."""
        opened = self.examine(folder)
        if opened.exists == 0:
            return opened, {}
        with self._talking(f"listing the new messages of {folder}"):
            data = self._command("UID", "FETCH", f"{last_uid + 1}:*", "(UID RFC822.SIZE)")
        sizes: dict[int, int] = {}
        for item in data:
            found = _SIZE.match(item[0] if isinstance(item, tuple) else item or b"")
            # "N:*" names the last message even when its UID is below N: keep only the new ones.
            if found and int(found.group("uid")) > last_uid:
                sizes[int(found.group("uid"))] = int(found.group("size"))
        return opened, dict(sorted(sizes.items()))

    def new_messages(self, folder: str, sizes: dict[int, int], max_bytes: int) -> Iterator[Fetched | TooLarge]:
        """Each message of `sizes` (from sizes_after), oldest first: fetched when within max_bytes, else TooLarge.
        A message removed meanwhile by another program is passed over."""
        if self._selected != folder:
            self.examine(folder)
        for uid, size in sizes.items():
            if size > max_bytes:
                yield TooLarge(uid, size)
                continue
            fetched = self.fetch(uid)
            if fetched is not None:
                yield fetched
