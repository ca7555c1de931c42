"""What the generated crpy.images.pb modules call to make their classes, made for start-up time.

protoc's Python output imports google.protobuf.internal.builder, descriptor_pool and
symbol_database, which pull in protobuf's pure-Python message implementation, text_format and
more: about 11 ms of every crpy command, though the upb backend makes the classes in C.
tools/build_protos.py points the generated modules here instead; with the upb backend this
module does what builder does (same module globals: message classes, enum wrappers and values,
_NAME descriptors) from google._upb._message directly.  Any other backend gets protobuf's own
builder, unchanged.
"""

_pool = None
_USE_C_DESCRIPTORS = True       # read by the generated code: the C descriptors need no offsets


def _upb():
    """google._upb._message when protobuf runs on upb, else None."""
    try:
        from google._upb import _message
        from google.protobuf.internal import api_implementation
    except ImportError:
        return None
    return _message if api_implementation.Type() == "upb" else None


def Default():                  # noqa: N802 - the name the generated code calls
    """The default descriptor pool (descriptor_pool.Default()); also stands for the symbol
    database the generated code asks for and never uses."""
    global _pool
    if _pool is None:
        upb = _upb()
        if upb is not None:
            _pool = upb.default_pool
        else:
            from google.protobuf import descriptor_pool

            _pool = descriptor_pool.Default()
    return _pool


def BuildMessageAndEnumDescriptors(file_des, module):   # noqa: N802
    """_NAME, _NAME_NESTED ... = the descriptors, as builder does."""
    for name, msg_des in file_des.message_types_by_name.items():
        module["_" + name.upper()] = msg_des
        _nested_descriptors(module, msg_des, "_" + name.upper() + "_")


def _nested_descriptors(module, msg_des, prefix):
    for name, nested in msg_des.nested_types_by_name.items():
        module[prefix + name.upper()] = nested
        _nested_descriptors(module, nested, prefix + name.upper() + "_")
    for enum_des in msg_des.enum_types:
        module[prefix + enum_des.name.upper()] = enum_des


def BuildTopDescriptorsAndMessages(file_des, module_name, module):   # noqa: N802
    """Enum wrappers and values, then the message classes (nested ones as class attributes)."""
    upb = _upb()
    if upb is None or file_des.extensions_by_name or file_des.services_by_name:
        from google.protobuf.internal import builder

        return builder.BuildTopDescriptorsAndMessages(file_des, module_name, module)
    from google.protobuf import message
    from google.protobuf.internal import enum_type_wrapper

    for name, enum_des in file_des.enum_types_by_name.items():
        module["_" + name.upper()] = enum_des
        module[name] = enum_type_wrapper.EnumTypeWrapper(enum_des)
        for value in enum_des.values:
            module[value.name] = value.number
    for name, msg_des in file_des.message_types_by_name.items():
        module[name] = _message_class(upb.MessageMeta, message.Message, module_name, msg_des, "")
    return None


def _message_class(meta, base, module_name, msg_des, prefix):
    body = {name: _message_class(meta, base, module_name, nested, prefix + msg_des.name + ".")
            for name, nested in msg_des.nested_types_by_name.items()}
    body.update(DESCRIPTOR=msg_des, __module__=module_name, __qualname__=prefix + msg_des.name)
    return meta(msg_des.name, (base,), body)
