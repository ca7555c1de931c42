"""Step (--compress): compress every page image of the dump, just before its digests are written.

Each pagemap image (pagemap-PID.img, pagemap-shmem-ID.img) names its pages-N.img in its head;
that pages image is compressed in place (crpy.images.pagecodec) and the head gets the codec in
its crpy-only field, so a restore knows to decode it and crit still decodes the pagemap.  The
page path itself (the parasite's splice into pages-N.img) is left as it is: compressing after
it keeps the freeze of one task short, and one step here covers private memory, shared memory
and memfd contents alike.  The pages of a pre-dump round's parent directory are not touched.
"""

import os

from crpy.log import log


def compress_page_images(images_dir, stats):
    """Compress the pages images of images_dir that are still raw; adds the byte counts to stats."""
    from crpy.images import framing, magic, pagecodec

    raw = stored = 0
    for name in sorted(os.listdir(images_dir)):
        kind = magic.kind_by_filename(name)
        if kind is None or kind.name not in ("pagemap", "pagemap_shmem"):
            continue
        mpath = os.path.join(images_dir, name)
        entries = framing.read_image(mpath, kind.name)
        head = entries[0]
        ppath = framing.image_path(images_dir, "pages", head.pages_id)
        if pagecodec.codec_of(head) != pagecodec.CODEC_NONE or not os.path.exists(ppath):
            continue
        r, s = pagecodec.compress_file(ppath)
        head.crpy_codec = pagecodec.CODEC_LZ4
        framing.write_image(mpath, kind.name, entries)
        raw, stored = raw + r, stored + s
    stats["pages_raw_bytes"], stats["pages_stored_bytes"] = raw, stored
    log.info("Pages compressed: %d bytes into %d (%.1f%%)", raw, stored, 100 * stored / raw if raw else 0)
