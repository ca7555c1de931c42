"""The lazy-pages daemon (`crpy lazy-pages`): serves the memory of a `crpy restore --lazy-pages`
through userfaultfd, on first touch and then in the background (daemon; its table of each mm: mm), from
a page source (source), with a guard process that kills the restored tasks if the daemon dies (guard)."""
