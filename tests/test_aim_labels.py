"""Live analysis: `aicctv edge aim --labels` on the sample clip, looked at in a real headless
Chromium. Each followed person is labelled with their track number, gender and age band as the
pipeline judges them so far (Analyzer.track and Analyzer.so_far, what the daemon counts), or
"unknown"; the summary gives the judged share; nothing is written to disk."""

from __future__ import annotations

import re
import urllib.request

import cv2
import numpy as np
from test_aim import files_under, lines_of, preview_url, start
from test_web import chromium, wait

from edge.aim import draw
from edge.wire.contract import AGE_BANDS

LABEL = re.compile(rf"^#(\d+) (female|male|unknown) ({'|'.join(map(re.escape, AGE_BANDS))}|unknown)$")
SCREENSHOT = "/tmp/aicctv-aim-labels.png"


def test_the_labelled_view_shows_each_followed_person_as_judged(sample_clip, tmp_path):
    clip, truth = sample_clip
    inputs = tmp_path / "in"
    inputs.mkdir()
    config = inputs / "edge.toml"
    config.write_text(f'[source]\nspec = "{clip}"\n[storage]\ndb = "{tmp_path / "var" / "edge.db"}"\n')
    for name in ("cwd", "tmp"):
        (tmp_path / name).mkdir()
    before = files_under(tmp_path)
    process = start({"config": config, "root": tmp_path}, "--labels", "--listen", "127.0.0.1:0", "--minutes", "5")
    browser = chromium()
    try:
        url = preview_url(lines_of(process))
        browser.get(url + "/")

        def followed() -> list[str]:
            return [item.text for item in browser.find_elements("css selector", "#followed li")]

        # Someone followed and judged (the sample clip's faces are large enough), and the summary's
        # judged share beside the face count.
        wait(browser, lambda _: any(LABEL.match(t) and "unknown" not in t for t in followed()), 240)
        labels = followed()
        assert labels and all(LABEL.match(t) for t in labels), labels
        wait(
            browser, lambda d: re.search(r"judged \d+ of \d+ followed \(\d+ %\)", d.find_element("id", "summary").text)
        )
        image = browser.find_element("css selector", "img")
        assert browser.execute_script("return arguments[0].naturalWidth", image) == truth["width"]
        browser.save_screenshot(SCREENSHOT)

        # The view itself carries the labels: a served frame has label boxes in the box colours.
        # The clip has moments with nobody in view, so frames are fetched until one shows someone.
        def boxes_drawn() -> int:
            with urllib.request.urlopen(url + "/frame.jpg", timeout=30) as answer:
                served = cv2.imdecode(np.frombuffer(answer.read(), np.uint8), cv2.IMREAD_COLOR)
            assert served.shape[1] == truth["width"]
            colours = (draw.GREEN, draw.RED)
            return max((np.abs(served.astype(int) - colour).max(axis=2) < 30).sum() for colour in colours)

        wait(browser, lambda _: boxes_drawn() > 100, 120)
        summary = urllib.request.urlopen(url + "/summary", timeout=30).read().decode()
        assert '"judged"' in summary and '"people"' in summary
    finally:
        browser.quit()
        process.kill()
        process.wait()
    assert files_under(tmp_path) == before
