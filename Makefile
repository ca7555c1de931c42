# crpy: the commands of the README.  `make test` is what CI runs.
PY ?= python3

.PHONY: deps build install test unit zdtm reliability soak fuzz demo bench clean

deps:            ## system packages, Python packages and sysctls crpy needs (run as root)
	sh tools/install-deps.sh

build:           ## generate the protobuf modules, the blobs and the cffi module in place
	$(PY) -m tools.build_protos crpy/images/pb
	$(PY) -m tools.build_blobs crpy/blobs
	$(PY) crpy/kernel/_build_ffi.py

install: deps    ## install crpy (the `crpy` command) into this Python
	$(PY) -m pip install -q .

unit: build
	$(PY) -m pytest -q tests/unit

zdtm: build      ## every zdtm test, one and three dump/restore iterations
	$(PY) -m tests.zdtm.run --all

test: build      ## unit tests and the whole zdtm set
	$(PY) -m pytest -q tests

reliability: build  ## crpy SIGKILLed at 50 random moments of a dump and of a restore of a 5-task tree
	CRPY_KILL_MOMENTS=50 $(PY) -m pytest -q -s tests/zdtm/test_faults.py -k killed

soak: build      ## 100 back-to-back dump/restore cycles of a 3-process pipe/socket/timer workload; prints the figures
	CRPY_SOAK_CYCLES=100 $(PY) -m pytest -q -s tests/zdtm/test_soak.py

fuzz: build      ## a short image fuzzing pass (fixed seed, about a minute); python3 -m fuzz.run for the long one
	$(PY) -m fuzz.run --runs 300 --seed 1 --max-time 10 --kinds core,mm,pagemap,pstree,files,cpuinfo,inventory

demo: install    ## start a counter, dump it, show it gone, restore it, watch it count on
	sh tools/demo.sh

bench: build     ## page dump/restore speed against a process_vm_readv baseline; trees, threads, fds, epoll, digests, start-up, 1000 TCP connections
	$(PY) -m bench.run

clean:
	rm -rf build dist *.egg-info crpy/kernel/_sys.* crpy/images/pb/*_pb2.py crpy/blobs/_*.py tests/zdtm/bin
