"""files.img as it is being built: ids handed out in order, one entry per file object.

Mapped files (exe, libraries, file VMAs) and cwd/root share one entry per inode, as CRIU does;
fds each get their own entry (no kcmp-based sharing yet).  The protobuf entries are built only
when asked for (`entries`), so ids can be handed out before the image modules are imported."""


class FileTable:
    def __init__(self):
        self._makers = []
        self._by_inode = {}

    def add(self, make_entry):
        """Reserve the next id; make_entry(id) builds its files.img entry later.  Returns the id."""
        self._makers.append(make_entry)
        return len(self._makers)

    @property
    def entries(self):
        return [make(file_id) for file_id, make in enumerate(self._makers, 1)]

    def add_path(self, path, st):
        """Id of a reg entry for a file opened for its mapping/cwd/root (flags 0, pos 0)."""
        key = (st.st_dev, st.st_ino, path)
        if key not in self._by_inode:
            from crpy.resources import regfile

            self._by_inode[key] = self.add(lambda fid: regfile.file_entry(fid, path, st))
        return self._by_inode[key]
