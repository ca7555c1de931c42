"""Step: the task's credentials (creds_entry): ids, groups, capability sets, securebits,
no_new_privs, from /proc/PID/status and the parasite."""


def _cap_words(value):
    return [value & 0xFFFFFFFF, value >> 32]


def dump_creds(status, misc):
    from crpy.images.pb import creds_pb2

    uid, euid, suid, fsuid = status.uids
    gid, egid, sgid, fsgid = status.gids
    return creds_pb2.creds_entry(
        uid=uid, gid=gid, euid=euid, egid=egid, suid=suid, sgid=sgid, fsuid=fsuid, fsgid=fsgid,
        cap_inh=_cap_words(status.cap_inh), cap_prm=_cap_words(status.cap_prm),
        cap_eff=_cap_words(status.cap_eff), cap_bnd=_cap_words(status.cap_bnd),
        cap_amb=_cap_words(status.cap_amb), secbits=misc.get("securebits", 0),
        groups=list(status.groups), no_new_privs=status.no_new_privs)
