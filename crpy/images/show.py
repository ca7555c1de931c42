"""`crpy show FILE|DIR ...`: print images as JSON, the way `crit decode` does.

One file prints {"magic": "CORE", "entries": [...]}; several files (or a directory, whose
image files are taken in name order) print one JSON object keyed by path.  Raw page images
print their size and page count, payload images (pipes-data) the payload length of each entry.
Enums print as names, bytes as base64 (unix socket names quoted-printable, as crit), everything
else as plain JSON numbers and strings.

Never a traceback: an image that cannot be decoded (cut short, a broken entry, a text field that
is not UTF-8 ...) is one line on stderr naming it and the offset; the images of a directory that
decode are printed all the same, and the exit code is 1.
"""

import base64
import json
import os
import sys

from crpy.errors import ImageError
from crpy.images import framing, magic

PAGE_SIZE = 4096


class _NotText(ValueError):
    """A string field holds bytes that are not UTF-8 (protobuf then hands back bytes)."""


def message_to_dict(msg):
    """A protobuf message as a dict of its set fields (crit's layout: field names as keys)."""
    out = {}
    for field, value in msg.ListFields():
        if field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        else:
            out[field.name] = _value(field, value)
    return out


def _value(field, value):
    if field.type == field.TYPE_MESSAGE:
        return message_to_dict(value)
    if field.type == field.TYPE_ENUM:
        named = field.enum_type.values_by_number.get(value)
        return named.name if named is not None else value
    if field.type == field.TYPE_BYTES:
        if field.name == "name" and field.containing_type.name == "unix_sk_entry":
            import quopri                       # crit prints unix socket names quoted-printable

            return quopri.encodestring(value).decode()
        return base64.b64encode(value).decode()
    if isinstance(value, bytes):
        raise _NotText(f"field {field.name} is not UTF-8 text")
    return value


def decode_file(path):
    """The JSON-ready dict of one image file."""
    kind = magic.kind_by_filename(os.path.basename(path))
    if kind is not None and kind.magic is None:
        return _raw_summary(path, kind)
    k, _, messages, payloads = framing.read_any(path)
    entries = []
    for index, m in enumerate(messages):
        try:
            entries.append(message_to_dict(m))
        except _NotText as e:
            raise ImageError(path, f"entry {index} is damaged: {e}", framing.entry_offset(path, index),
                             "the image is corrupted, or was written by an incompatible tool") from None
    if payloads is not None:
        for entry, payload in zip(entries, payloads):
            entry["payload_len"] = len(payload)
    if k.name == "pagemap":
        _add_page_sources(path, entries)
    return {"magic": magic.CRIT_NAMES.get(k.name, k.name.upper()), "entries": entries}


def _add_page_sources(path, entries):
    """In a pre-dump chain (a `parent` link beside the pagemap), each entry also says where its
    bytes are: "source": ["DIR/pages-N.img@OFFSET+LENGTH", ...] (crpy's key; crit has none)."""
    from crpy.images import chain, pagecodec

    images_dir = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    if chain.parent_dir(images_dir) is None or not name[len("pagemap-"):-len(".img")].isdigit():
        return
    pid = int(name[len("pagemap-"):-len(".img")])
    pieces = {s: (ppath, offset) for s, _, _, ppath, offset in chain.task_runs(images_dir, pid)}
    for entry in entries[1:]:
        vaddr, length = entry["vaddr"], entry.get("nr_pages", entry.get("compat_nr_pages", 0)) * PAGE_SIZE
        ppath, offset = pieces.get(vaddr, (None, None))
        try:
            found = [(ppath, offset, length)] if ppath else \
                [(p, o, n) for _, n, p, o in chain.resolve(images_dir, pid, vaddr, length)]
        except ImageError as e:
            entry["source"] = f"missing: {e.one_line()}"
            continue
        # a compressed image is named itself; the offsets are then in its decoded bytes
        entry["source"] = [f"{pagecodec.image_of(p)}@{o:#x}+{n:#x}" for p, o, n in found]


def _raw_summary(path, kind):
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise ImageError(path, f"cannot stat image: {os.strerror(e.errno)}") from None
    out = {"magic": magic.CRIT_NAMES[kind.name], "size": size, "pages": size // PAGE_SIZE}
    if kind.name == "pages":
        from crpy.images import pagecodec

        out.update(pagecodec.summary(path))     # compressed (--compress): its codec and raw size
    return out


def _image_files(directory):
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise ImageError(directory, f"cannot list directory: {os.strerror(e.errno)}") from None
    return [os.path.join(directory, n) for n in names
            if os.path.isfile(os.path.join(directory, n))
            and (n.endswith(".img") or magic.kind_by_filename(n) is not None)]


def _decode_in_dir(path):
    """Like decode_file, but an image kind crpy cannot decode is reported, not fatal."""
    try:
        return decode_file(path)
    except framing.UnknownImageKind as e:
        return {"magic": "UNKNOWN", "error": e.one_line()}


def collect(paths, errors=None):
    """{path: decoded dict} for the given files and the image files of the given directories.

    With a list as errors, an image that cannot be decoded goes there (an ImageError) and the
    others are decoded all the same; without one, the first such error is raised."""
    result = {}
    for path in paths:
        if os.path.isdir(path):
            files = _image_files(path)
            if not files:
                raise ImageError(path, "no image files in this directory",
                                 hint="is this the -D directory of a dump?")
        else:
            files = [path]
        for f in files:
            try:
                result[f] = _decode_in_dir(f) if f != path else decode_file(f)
            except ImageError as e:
                if errors is None:
                    raise
                errors.append(e)
    return result


def show(paths, pretty=False, out=None, err=None):
    """Print the images as JSON, and one line on err per image that cannot be decoded; returns
    the exit code (1 if any could not).  A missing file or an empty directory raises ImageError."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    errors = []
    result = collect(paths, errors)
    if errors and len(paths) == 1 and not os.path.isdir(paths[0]):
        raise errors[0]                   # the CLI prints it, as for any other error
    for e in errors:
        err.write(e.error_line() + "\n")
    single = len(paths) == 1 and not os.path.isdir(paths[0])
    doc = next(iter(result.values())) if single else result
    try:
        out.write(json.dumps(doc, indent=4 if pretty else None) + "\n")
        out.flush()
    except BrokenPipeError:  # `crpy show DIR | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return 1 if errors else 0
