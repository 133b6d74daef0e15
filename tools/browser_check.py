"""``make browser-check``: every notebook run in JupyterLab by headless Chromium, as a new user would.

Starts JupyterLab on 127.0.0.1 (a random port and token) over a copy of ``notebooks/``, with a
fresh runs folder (``AVLIB_RUNS``), so 05-08 make their default runs as on a clean clone. For
each notebook it clicks Run > Run All Cells, waits until every cell has run, saves, and fails on
any error output, "Error displaying widget" or a traceback in the page. In 05 it clicks the
explorer's "generate" (a video must appear); in 08 it clicks a rater button (a rating must be
saved, and no button label may be cut off). Screenshots go to ``OUT/*.png``.

Needs Debian's ``chromium`` and ``chromium-driver`` and selenium (``pip install -e .[browser]``);
``make browser-check`` installs them. Not part of ``make test``.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By

ROOT = Path(__file__).resolve().parents[1]
# JupyterLab commands as a user finds them: (menu, item).
RUN_ALL = ("Run", "Run All Cells")
CLEAR_ALL = ("Edit", "Clear Outputs of All Cells")
SAVE = ("File", "Save Notebook")
WIDGET_ERROR = "Error displaying widget"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_lab(folder: Path, runs: Path, port: int, token: str, log: Path) -> subprocess.Popen:
    # Workspaces and settings of its own: a user's saved layout would reopen their tabs here.
    # Every cell stays in the page (JupyterLab 4 otherwise renders only those in view), so
    # the check sees every prompt and output.
    settings = folder.parent / "settings"
    for plugin, values in (("notebook-extension/tracker", {"windowingMode": "none"}),
                           # no "get notified about Jupyter news?" toast over the page
                           ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False})):
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, "AVLIB_RUNS": str(runs), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "JUPYTERLAB_WORKSPACES_DIR": str(folder.parent / "workspaces"), "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    env.pop("AVLIB_HEADLESS", None)  # the widgets must show
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
               "--KernelManager.transport=ipc", "--allow-root"]
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or ""
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def wait_for(condition, timeout: float, what: str, poll: float = 1.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def command(driver, menu_item: tuple[str, str]) -> None:
    """Run a JupyterLab command through its menu bar, as a user clicks it."""
    menu, item = menu_item
    driver.find_element(By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and text()='{menu}']").click()
    wait_for(lambda: driver.find_elements(By.XPATH, f"//div[contains(@class,'lm-Menu-itemLabel') and text()='{item}']"),
             10, f"menu item {menu} > {item}")[0].click()


def all_cells_ran(driver) -> bool:
    prompts = [p.text for p in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputArea-prompt")]
    return bool(prompts) and all(p.startswith("[") and p[1:-2].isdigit() for p in prompts)


def page_problems(driver) -> list[str]:
    """Errors shown in the open notebook's outputs (not its prose, which may quote them)."""
    outputs = driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
    text = "\n".join(output.text for output in outputs)
    return [marker for marker in (WIDGET_ERROR, "Traceback (most recent call last)") if marker in text]


def saved_errors(path: Path) -> list[str]:
    """Error outputs and cells that never ran, in the notebook as JupyterLab saved it."""
    cells = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    errors = [f"{out['ename']}: {out['evalue']}" for cell in cells for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    unrun = sum(cell.get("execution_count") is None for cell in cells)
    return errors + ([f"{unrun} code cells did not run"] if unrun else [])


def run_notebook(driver, base: str, folder: Path, name: str, timeout: float, shots: Path) -> float:
    started = time.monotonic()
    driver.get(f"{base}/lab/tree/{name}?reset")  # this notebook alone, no tabs of the last one
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"), 120, f"{name} to open")
    wait_for(lambda: "| Idle" in driver.find_element(By.CSS_SELECTOR, ".jp-StatusBar-Widget").text,
             120, f"{name}'s kernel", poll=2)
    time.sleep(5)  # "Idle" can show before the kernel's channels connect; cells sent then were lost
    # The committed notebooks hold their outputs: cleared first (counts too), so a numbered prompt
    # afterwards is a cell that ran now.
    command(driver, CLEAR_ALL)
    command(driver, RUN_ALL)
    wait_for(lambda: all_cells_ran(driver) or page_problems(driver), timeout, f"{name} to run", poll=3)
    command(driver, SAVE)
    time.sleep(2)
    driver.save_screenshot(str(shots / f"{Path(name).stem}.png"))
    problems = page_problems(driver) + saved_errors(folder / name)
    if problems:
        raise AssertionError(f"{name}: {'; '.join(problems)}")
    return time.monotonic() - started


def shut_down_kernels(base: str, token: str) -> None:
    """Stop the kernels of notebooks already checked (each holds a model in memory)."""
    import urllib.request

    with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=30) as response:
        kernels = json.load(response)
    for kernel in kernels:
        request = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()


def click_button(driver, label: str):
    buttons = [b for b in driver.find_elements(By.CSS_SELECTOR, "button.jupyter-button") if b.text == label]
    if not buttons:
        raise AssertionError(f"no button labelled {label!r} on the page")
    driver.execute_script("arguments[0].scrollIntoView()", buttons[0])
    buttons[0].click()
    return buttons[0]


def check_explorer(driver, shots: Path) -> None:
    click_button(driver, "generate")
    widget = driver.find_element(By.CSS_SELECTOR, ".widget-vbox")
    # The explorer shows either videos or the error it caught, in a <pre>.
    wait_for(lambda: widget.find_elements(By.TAG_NAME, "video") or widget.find_elements(By.TAG_NAME, "pre"),
             300, "the explorer's video", poll=2)
    driver.save_screenshot(str(shots / "05_explorer.png"))
    errors = widget.find_elements(By.TAG_NAME, "pre")
    if errors or len(widget.find_elements(By.TAG_NAME, "video")) != 1:  # source beside generated, one clip
        raise AssertionError(f"explorer: no comparison video after 'generate': "
                             f"{errors[0].text if errors else widget.text[-300:]}")


def check_rater(driver, runs: Path, shots: Path) -> None:
    cut = [b.text for b in driver.find_elements(By.CSS_SELECTOR, "button.jupyter-button")
           if driver.execute_script("return arguments[0].scrollWidth > arguments[0].clientWidth", b)]
    if cut:
        raise AssertionError(f"rater: button labels cut off: {cut}")
    click_button(driver, "left fits the sound better")
    ratings = runs / "ratings.csv"
    wait_for(lambda: ratings.is_file() and len(ratings.read_text().splitlines()) == 2, 30, "the saved rating")
    driver.save_screenshot(str(shots / "08_rater.png"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "browser_check", help="screenshots and logs")
    parser.add_argument("--notebooks", nargs="+", default=None, help="names (default: all, in order)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per notebook")
    args = parser.parse_args(argv)
    names = args.notebooks or sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="avlib-browser-check-"))
    folder, runs = work / "notebooks", work / "runs"
    shutil.copytree(ROOT / "notebooks", folder)
    port, token = free_port(), secrets.token_hex(16)
    lab = start_lab(folder, runs, port, token, args.out / "jupyterlab.log")
    driver = None
    started = time.monotonic()
    try:
        base = f"http://127.0.0.1:{port}"
        driver = browser()
        wait_for(lambda: _responds(f"{base}/api/status?token={token}"), 120, "JupyterLab to start")
        driver.get(f"{base}/lab?token={token}")
        for name in (n if n.endswith(".ipynb") else f"{n}.ipynb" for n in names):
            seconds = run_notebook(driver, base, folder, name, args.timeout, args.out)
            if name.startswith("05_"):
                check_explorer(driver, args.out)
            if name.startswith("08_"):
                check_rater(driver, runs, args.out)
            shut_down_kernels(base, token)
            print(f"{name}: OK in {seconds:.0f} s", flush=True)
    except (AssertionError, TimeoutError, WebDriverException) as exc:
        print(f"browser check FAILED: {exc} (screenshots and the JupyterLab log in {args.out})", file=sys.stderr)
        if driver:
            driver.save_screenshot(str(args.out / "failure.png"))
        return 1
    finally:
        if driver:
            driver.quit()
        lab.terminate()
        lab.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"browser check passed: {len(names)} notebooks in {time.monotonic() - started:.0f} s")
    return 0


def _responds(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
