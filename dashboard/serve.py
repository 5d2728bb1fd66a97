"""`fer-dashboard [--data PATH] [--server.port 8502 ...]`: start the dashboard of an installed copy.

Streamlit reads `.streamlit/config.toml` from the working directory, so an app started anywhere
else would lose the project's settings and listen on every interface with the default upload
limit. This command passes them on the command line instead (`SERVING`, kept equal to
`.streamlit/config.toml` by a test). Options naming a Streamlit setting (`--server.port 8502`,
`--server.address=0.0.0.0`) go to Streamlit and override these; every other argument goes to
the app, as after `streamlit run dashboard/app.py --`.
"""

import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")

SERVING = {
    "server.headless": True,
    "server.address": "localhost",
    "server.maxUploadSize": 16,
    "server.fileWatcherType": "none",  # an installed app's code does not change under it
    "browser.gatherUsageStats": False,
    "runner.postScriptGC": False,
    "client.toolbarMode": "viewer",
}


def split_arguments(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(Streamlit settings, the app's arguments): `--section.name VALUE` or
    `--section.name=VALUE` is a Streamlit setting; anything else is the app's."""
    settings, app_args = {}, []
    tokens = iter(argv)
    for token in tokens:
        name, equals, value = token.removeprefix("--").partition("=")
        if token.startswith("--") and "." in name:
            settings[name] = value if equals else next(tokens, "")
        else:
            app_args.append(token)
    return settings, app_args


def streamlit_command(argv: list[str]) -> list[str]:
    """The `streamlit run` command line that serves the app with these arguments."""
    chosen, app_args = split_arguments(argv)
    settings = {name: _text(value) for name, value in SERVING.items()} | chosen
    flags = [f"--{name}={value}" for name, value in settings.items()]
    return ["streamlit", "run", str(APP), *flags, "--", *app_args]


def main() -> None:
    from streamlit.web import cli

    sys.argv = streamlit_command(sys.argv[1:])
    sys.exit(cli.main())


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


if __name__ == "__main__":
    main()
