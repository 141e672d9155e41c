"""The clean-up's walk of the source keys: the clean-up script compares keys it is given, so the
SCAN runs here. Its pages come ahead of need: the page the next batch will take from is read
in the round trip of the call that cleans the batch before (Session.defer_read), so a SCAN
costs a round trip of its own only while too few keys are at hand."""

from __future__ import annotations

from .keys import each_pattern, scan_count


class KeyWalk:
    """Every source key matching a pattern, once per pattern list, never the index names; a
    batch at a time, never all at once."""

    def __init__(self, session):
        self.session = session
        self.patterns = list(each_pattern(session.patterns))
        self.cursor = 0
        self.found = []  # keys found, not taken yet
        self.reading = False  # a page is on its way, with the next call
        self.skip = set(session.index_names)

    def batch(self, size):
        """The next ``size`` keys (fewer at the end, none once walked), each once; the page
        after them is asked for with the call that takes them."""
        while len(self.found) < size and self.patterns and not self.reading:
            self._page(self.session.source.execute_command(*self._scan(size)))
        taken, self.found = self.found[:size], self.found[size:]
        if taken and self.patterns and len(self.found) < size and not self.reading:
            # Twice a batch's worth: a SCAN page holds fewer keys than its COUNT when the db is
            # sparse, and the next batch should not wait for a SCAN of its own.
            self.reading = True
            read = [self._scan(2 * size)]
            self.session.defer_read(self.session.options.source_db, read, self._read)
        # SCAN may return a key twice; a batch holds it once.
        return list(dict.fromkeys(taken))

    def _scan(self, size):
        pattern = self.patterns[0][0]
        return ("SCAN", self.cursor, "MATCH", pattern, "COUNT", scan_count(size))

    def _read(self, replies):
        self.reading = False
        self._page(replies[0])

    def _page(self, reply):
        """Take in a SCAN page of the current pattern; after its last, go on to the next."""
        cursor, keys = reply
        matched_before = self.patterns[0][1]
        self.found += [key for key in keys if key not in self.skip and not matched_before(key)]
        self.cursor = int(cursor)
        if self.cursor == 0:
            self.patterns.pop(0)
