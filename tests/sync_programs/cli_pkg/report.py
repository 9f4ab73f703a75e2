"""What a program run with ``-m`` sees, as JSON."""

import asyncio
import json
import sys


async def loop_name() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__name__


def report(module_globals: dict) -> None:
    print(
        json.dumps(
            {
                "loop": asyncio.run(loop_name()),
                "name": module_globals["__name__"],
                "spec": module_globals["__spec__"].name,
                "argv": sys.argv,
                "path0": sys.path[0],
                "main_module": sys.modules["__main__"].__dict__ is module_globals,
            }
        ),
        flush=True,
    )
    if sys.argv[1:2] == ["exit"]:
        sys.exit(int(sys.argv[2]))
