"""Ray job entrypoint: `enrich run` on the cluster the job was submitted to.

    enrich submit --address http://HEAD:8265 s3://bucket/clips s3://bucket/manifests --fps 2

submits it (with this checkout's code and the options in a config file); by hand, from a checkout:

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/enrich_job.py s3://bucket/clips s3://bucket/manifests --fps 2

Takes the same arguments and options as `enrich run`; Ray sets RAY_ADDRESS for the job, so the
run joins the cluster instead of starting a local Ray. The exit code is the run's (0, 1 or 2); a
crash (a dependency the cluster lacks, a bug) is 2, with its traceback in the job's logs, never 1
("some clips failed").
"""

import sys
import traceback

if __name__ == "__main__":
    try:
        from enrich.cli import main

        sys.exit(main(["run", *sys.argv[1:]]))
    except Exception:
        traceback.print_exc()
        sys.exit(2)
