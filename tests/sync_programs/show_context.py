"""Reports what it was started with, as JSON on stdout, then exits as told.

Usage: python show_context.py [exit CODE | exit-message TEXT | raise | interrupt] [args...]
"""

import asyncio
import json
import os
import sys

import helper_module  # found through sys.path[0], the script's directory


async def main() -> dict:
    await asyncio.sleep(0)
    return {
        "loop": type(asyncio.get_running_loop()).__name__,
        "helper": helper_module.NAME,
    }


if __name__ == "__main__":
    report = asyncio.run(main())
    report.update(
        name=__name__,
        argv=sys.argv,
        path0=sys.path[0],
        file=os.path.abspath(__file__),
        main_module=sys.modules["__main__"].__dict__ is globals(),
    )
    print(json.dumps(report), flush=True)
    what = sys.argv[1:2]
    if what == ["exit"]:
        sys.exit(int(sys.argv[2]))
    if what == ["exit-message"]:
        sys.exit(sys.argv[2])
    if what == ["raise"]:
        raise ValueError("raised by the program")
    if what == ["interrupt"]:
        raise KeyboardInterrupt
