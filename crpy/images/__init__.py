"""crpy's on-disk image format, wire-compatible with CRIU 4.x; knows nothing of the kernel.

magic (kinds, file names, magic numbers), framing (read/write image files), pages (pagemap onto
pages-N.img), regs and xsave (register state <-> core messages), show (`crpy show`).  The
protobuf modules in pb/ are generated from images/proto/ by tools/build_protos.py.
"""
