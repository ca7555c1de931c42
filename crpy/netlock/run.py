"""Running the firewall tools of the network lock (nft, iptables-restore): one call, its input on
stdin, a failure as one CrpyError line naming the tool and what it said."""

import subprocess


def tool(argv, script=None, check=True):
    """Run argv with script on stdin; its completed process (check: CrpyError on failure)."""
    from crpy.errors import CrpyError

    try:
        done = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise CrpyError(f"network lock: {argv[0]} is not installed",
                        "install nftables or iptables, or pass --network-lock skip") from None
    if check and done.returncode:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise CrpyError(f"network lock: {' '.join(argv)} failed: {said[0] if said else done.returncode}",
                        "is the nf_tables / iptables kernel support there? else --network-lock skip")
    return done
