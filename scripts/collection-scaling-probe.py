#!/usr/bin/env python3
"""How the test server's costs grow with the number of collections it holds.

Creates empty collections (each with one secondary index, as a tenant collection has) in
steps and, at each step, times creating one more collection, an insert and a find_one by a
unique key. Run it through the project's test server script:

    scripts/with-test-mongo.sh .venv/bin/python scripts/collection-scaling-probe.py [MAX]

docs/benchmarks.md explains what its figures mean for benchmark scenario 3.
"""
import os
import sys
import time

import pymongo


def mean_ms(action, n):
    started = time.perf_counter()
    for _ in range(n):
        action()
    return (time.perf_counter() - started) / n * 1000


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    client = pymongo.MongoClient(os.environ["ORGSVC_TEST_MONGODB_URI"])
    master = client["probe_master"]
    tenants = client["probe_tenants"]
    master.orgs.create_index("key", unique=True)
    master.orgs.insert_one({"key": "warm"})
    steps = [0] + [s for s in (500, 1000, 2000, 3000, 6000, 10000) if s <= limit]
    made = 0
    print(f"{'collections':>11} {'create ms':>10} {'insert ms':>10} {'find_one ms':>12}")
    for step in steps:
        while made < step:
            tenants.create_collection(f"org_{made}")
            tenants[f"org_{made}"].create_index("updated_at")
            made += 1
        started = time.perf_counter()
        tenants.create_collection(f"extra_{step}")
        create = (time.perf_counter() - started) * 1000
        tenants.drop_collection(f"extra_{step}")
        insert = mean_ms(lambda: master.scratch.insert_one({}), 100)
        find = mean_ms(lambda: master.orgs.find_one({"key": "warm"}), 200)
        print(f"{step:>11} {create:>10.1f} {insert:>10.2f} {find:>12.2f}", flush=True)
    client.drop_database("probe_master")
    client.drop_database("probe_tenants")


if __name__ == "__main__":
    main()
