"""Points of a run where its caller may act: to show progress, or, in tests, to make something
happen at an exact moment (a crash, an application write, a key expiring)."""

from __future__ import annotations


class Hooks:
    """Every method does nothing; a caller overrides those it needs. Each gets the names at
    hand, and its return value is ignored."""

    def before_batch(self, keys):
        """Before a server call handles a batch. The clean-up gives the batch SCAN found. The
        copy's calls find their batch with SCAN themselves: ``keys`` are only those an earlier
        call found and left over (it stopped at its byte budget), usually none."""

    def after_batch(self, keys):
        """The keys a call handled, counted; what it copied is read back in the round trip of
        the next call (or the run's last)."""

    def before_read_back(self, keys):
        """The keys one server call has just copied, before they are read back."""

    def before_index_page(self, index):
        """Before the next page of ``index`` is merged."""

    def after_index_page(self, index, members):
        """A page of ``index`` merged, before its ``members`` are read back."""

    def before_index_delete(self, index):
        """The clean-up has checked ``index`` and is about to delete it from the source."""

    def before_full_check(self):
        """The copy is done and read back; everything is about to be read again."""
