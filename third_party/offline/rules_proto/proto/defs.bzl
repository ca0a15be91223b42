"""Offline stand-in for rules_proto: forwards to Bazel's native proto rules."""

_NATIVE_PROTO_INFO = ProtoInfo

def proto_library(**kwargs):
    native.proto_library(**kwargs)

def proto_lang_toolchain(**kwargs):
    native.proto_lang_toolchain(**kwargs)

ProtoInfo = _NATIVE_PROTO_INFO
