"""files.img as it is being built: ids handed out in order, one entry per file object.

Mapped files (exe, libraries, file VMAs) and cwd/root share one entry per inode, as CRIU does;
fds that share an open file description share one entry (crpy.resources.fdtable).  The protobuf
entries are built only when asked for (`entries`), so ids can be handed out before the image
modules are imported.  Kinds that carry data besides their files.img entry (pipe data, ghost
file contents) hand it to payload()/write_image(); those images are written when `entries` is
read, while the tasks are still stopped."""


class FileTable:
    def __init__(self, images_dir=None, pages_ids=None):
        self.images_dir = images_dir
        self.pages_ids = pages_ids     # the dump's counter of pages-N.img numbers (memfd contents)
        self._makers = []
        self._by_inode = {}
        self._once = {}
        self._payloads = {}            # payload image kind -> [(entry, bytes)]
        self._plain = {}               # plain image kind -> [entries]
        self.descriptions = {}         # (dev, ino) -> [(pid, fd, file id)] of the fds dumped so far

    def add(self, make_entry):
        """Reserve the next id; make_entry(id) builds its files.img entry later.  Returns the id."""
        self._makers.append(make_entry)
        return len(self._makers)

    @property
    def entries(self):
        out = [make(file_id) for file_id, make in enumerate(self._makers, 1)]
        self._write_extra_images()
        return out

    def add_path(self, path, st, unlinked_source=None):
        """Id of a reg entry for a file opened for its mapping/cwd/root (flags 0, pos 0).  A file
        unlinked since it was mapped gives its contents through unlinked_source (its
        /proc/PID/map_files/START-END link): they go into the images as a ghost file."""
        key = (st.st_dev, st.st_ino, path)
        if key not in self._by_inode:
            from crpy.resources import ghost, regfile

            if unlinked_source is not None:
                make = lambda fid: ghost.mapped_entry(fid, path, st, unlinked_source, self)  # noqa: E731
            else:
                make = lambda fid: regfile.file_entry(fid, path, st)  # noqa: E731
            self._by_inode[key] = self.add(make)
        return self._by_inode[key]

    def once(self, key, make):
        """make() the first time `key` is seen (one pipe's data, one ghost file); its result after."""
        if key not in self._once:
            self._once[key] = make()
        return self._once[key]

    def payload(self, kind, entry, data):
        """Queue an (entry, raw data) pair for payload image `kind` (pipes_data, fifo_data)."""
        self._payloads.setdefault(kind, []).append((entry, data))

    def plain(self, kind, entry):
        """Queue an entry for a plain image `kind` (remap_fpath)."""
        self._plain.setdefault(kind, []).append(entry)

    def _write_extra_images(self):
        if not (self._payloads or self._plain):
            return
        if self.images_dir is None:
            raise RuntimeError("FileTable needs images_dir to write pipe/ghost data")
        from crpy.images import framing

        for kind, items in self._payloads.items():
            framing.write_payload_image(framing.image_path(self.images_dir, kind), kind, items)
        for kind, entries in self._plain.items():
            framing.write_image(framing.image_path(self.images_dir, kind), kind, entries)
        self._payloads, self._plain = {}, {}
