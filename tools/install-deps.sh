#!/bin/sh
# Install what crpy needs on a fresh Debian machine of the project's kind (run as root):
# gcc and make for the blobs and the cffi module, protoc for the image formats, Debian's criu for
# its `crit` decoder (the differential tests), servers no one here wrote for the real-program tests
# (redis, memcached: started by the tests themselves, never as services), the Python packages, and a pipe size limit large
# enough for the page pipe.
set -e
need=""
for pair in gcc:gcc make:make protoc:protobuf-compiler crit:criu nft:nftables iptables:iptables \
            redis-server:redis-server redis-cli:redis-tools memcached:memcached; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
done
[ -x /usr/bin/time ] || need="$need time"     # GNU time: the soak test's peak RSS of each crpy command
if [ -n "$need" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
${PY:-python3} -m pip install -q --disable-pip-version-check "cffi>=1.16" "protobuf>=4.21" "xxhash>=3" "lz4>=4" "pyelftools>=0.30" "pytest>=7" "pytest-timeout>=2"
# atheris (coverage-guided fuzzing of the image readers, `make fuzz`): a wheel for CPython 3.11,
# installed in seconds; where it has none, `make fuzz` and its test say they are skipped.
${PY:-python3} -m pip install -q --disable-pip-version-check --only-binary=:all: "atheris>=2.3" || \
    echo "atheris has no wheel for this Python: make fuzz will be skipped"
# Pipes above 1 MiB need this raised (root lacks CAP_SYS_RESOURCE here).
cur=$(cat /proc/sys/fs/pipe-max-size)
[ "$cur" -ge 67108864 ] || sysctl -q -w fs.pipe-max-size=67108864
# ICMP "ping" sockets for every group (systemd's default; the kernel's is none): the raw_sockets test.
sysctl -q -w net.ipv4.ping_group_range="0 2147483647"
