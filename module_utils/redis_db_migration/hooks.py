"""Points of a run where its caller may act: to show progress, or, in tests, to make something
happen at an exact moment (a crash, an application write, a key expiring)."""

from __future__ import annotations


class Hooks:
    """Every method does nothing; a caller overrides those it needs. Each gets the names at
    hand, and its return value is ignored."""

    def before_batch(self, keys):
        """A batch of key names SCAN found, before any of them is copied or cleaned up."""

    def after_batch(self, keys):
        """The same batch, every key handled and what it copied read back."""

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
