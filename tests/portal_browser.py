"""A headless Debian chromium, driven through Debian's chromium-driver with Selenium, looking at DIRAC's web portal
of the session sandbox as a shifter would: open an app, press its buttons, read the rows its grids show."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    JavascriptException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent
#: screenshots of every page the tests open (KM3DIRAC_TEST_RESULTS to put them elsewhere)
RESULTS_DIR = Path(os.environ.get("KM3DIRAC_TEST_RESULTS", ROOT / "test-results")) / "portal"
PAGE_TIMEOUT = 60
APPS = {
    "JobMonitor": "DIRAC.JobMonitor.classes.JobMonitor",
    "TransformationMonitor": "DIRAC.TransformationMonitor.classes.TransformationMonitor",
    "RequestMonitor": "DIRAC.RequestMonitor.classes.RequestMonitor",
    "FileCatalog": "DIRAC.FileCatalog.classes.FileCatalog",
}
# the visible grids of the open app (the menu tree excluded), each with its visible columns' dataIndex in order
_VISIBLE_GRIDS = """
return Ext.ComponentQuery.query('gridpanel').filter(function (grid) {
  return grid.isVisible(true) && !grid.isXType('treepanel') && grid.up('window[cls=x-window-dlg]') == null;
}).map(function (grid) {
  return {id: grid.getId(), title: grid.getTitle ? (grid.getTitle() || '') : '',
          columns: grid.getVisibleColumns().map(function (c) { return c.dataIndex || c.text || ''; })};
});
"""


class PortalError(AssertionError):
    pass


def start_chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,900", "--lang=en-GB",
                     # the page template loads a script from Google: offline, answer at once that it is not there
                     "--host-resolver-rules=MAP www.google.com ~NOTFOUND"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@dataclass
class Grid:
    id: str
    title: str
    columns: list[str]


class PortalBrowser:
    def __init__(self, driver: webdriver.Chrome, login_url: str) -> None:
        self.driver = driver
        self.login_url = login_url
        self.base = login_url.split("/login", 1)[0]
        self.window_grid: Grid | None = None  # the grid of the last window read by window_grid_rows

    def login(self) -> dict:
        """Open the login URL; the portal's own idea of who the browser is (``getConfigData``)."""
        self.driver.get(self.login_url)
        self.wait_for(lambda: self.driver.execute_script(
            "return window.GLOBAL && GLOBAL.APP && GLOBAL.APP.configData ? GLOBAL.APP.configData.user : null"),
            "the portal's desktop")
        return self.driver.execute_script("return GLOBAL.APP.configData.user")

    def open_app(self, app: str, group: str | None = None) -> None:
        """Open ``app`` alone on the desktop (the URL state a shifter bookmarks), in ``group`` if given."""
        prefix = f"{self.base}/DIRAC/" if group is None else f"{self.base}/DIRAC/s:None/g:{group}/"
        self.driver.get(f"{prefix}?url_state=1|*{APPS[app]}:,")
        self.wait_for(lambda: self.driver.execute_script(
            "return Ext.ComponentQuery.query('button[text=Submit]').some(function (b) { return b.isVisible(true); })"),
            f"{app}'s Submit button")
        self.close_notifications()

    def close_notifications(self) -> None:
        """Close the portal's notifications ("Running without authentication ..." over plain http: the front
        speaks http on loopback; identity comes from the front, not from the browser's certificate)."""
        self.driver.execute_script(
            "Ext.ComponentQuery.query('window').forEach(function (w) {"
            " if (w.isVisible() && (w.title == 'Notification' || w.title == 'Information')) { w.close(); } });"
            "document.querySelectorAll('.x-toast,.ux-notification-window').forEach(function (e) { e.remove(); });")

    def click_button(self, text: str) -> None:
        buttons = [b for b in self.driver.find_elements(By.XPATH, f"//span[normalize-space(text())='{text}']")
                   if b.is_displayed()]
        if not buttons:
            raise PortalError(f"no visible button {text!r} on the page")
        buttons[0].click()

    def grids(self) -> list[Grid]:
        return [Grid(**grid) for grid in self.driver.execute_script(_VISIBLE_GRIDS)]

    def grid(self, first_column: str) -> Grid:
        """The visible grid whose columns include ``first_column``."""
        for grid in self.grids():
            if first_column in grid.columns:
                return grid
        raise PortalError(f"no visible grid with a column {first_column!r}: {self.grids()}")

    def rows(self, grid: Grid) -> list[dict[str, str]]:
        """The rows the grid shows: {dataIndex: the text in the cell}."""
        rows = []
        for item in self.driver.find_elements(By.CSS_SELECTOR, f"#{grid.id} table.x-grid-item"):
            # textContent: also the cells of collapsed groups and those cut short with an ellipsis
            cells = [(cell.get_attribute("textContent") or "").strip()
                     for cell in item.find_elements(By.CSS_SELECTOR, "td.x-grid-cell")]
            if cells:  # not a group's header
                rows.append(dict(zip(grid.columns, cells, strict=False)))
        return rows

    def row_element(self, grid: Grid, column: str, value: str) -> WebElement:
        index = grid.columns.index(column)
        for item in self.driver.find_elements(By.CSS_SELECTOR, f"#{grid.id} table.x-grid-item"):
            cells = item.find_elements(By.CSS_SELECTOR, "td.x-grid-cell")
            if len(cells) > index and (cells[index].get_attribute("textContent") or "").strip() == value:
                return cells[index]
        raise PortalError(f"no row with {column} = {value!r} in {self.rows(grid)}")

    def click_row(self, column: str, value: str) -> None:
        """Click the cell ``value`` in the visible grid with ``column`` (again if the grid re-renders under it)."""
        def click():
            self.row_element(self.grid(column), column, value).click()
            return True

        self.wait_for(click, f"a row with {column} = {value!r} to click")

    def click_when_unmasked(self, selector: str, what: str) -> None:
        """Click the element ``selector`` (CSS), again while the page's load mask intercepts the click."""
        def click():
            self.driver.find_element(By.CSS_SELECTOR, selector).click()
            return True

        self.wait_for(click, what)

    def choose_in_selector(self, label: str, value: str) -> None:
        """Pick ``value`` in the drop-down selector ``label`` of an app's left panel (Operation Type ...)."""
        field_id = self.wait_for(lambda: self.driver.execute_script(
            "var wanted = arguments[0];"
            "var f = Ext.ComponentQuery.query('combobox').filter(function (c) {"
            " return c.isVisible(true) && c.fieldLabel == wanted; });"
            "return f.length ? f[0].getId() : null;", label),
            f"the selector {label!r}")
        self.click_when_unmasked(f"#{field_id} .x-form-trigger", f"the selector {label!r} to open")
        item = self.wait_for(lambda: [i for i in self.driver.find_elements(By.CSS_SELECTOR, "li.x-boundlist-item")
                                      if i.is_displayed() and i.text.strip() == value],
                             f"{value!r} in the selector {label!r}")
        item[0].click()

    def wait_for_rows(self, first_column: str, predicate, what: str) -> list[dict[str, str]]:
        """Wait until the grid with ``first_column`` shows rows for which ``predicate(rows)`` is true."""
        seen: list[dict[str, str]] = []

        def check():
            nonlocal seen
            try:
                seen = self.rows(self.grid(first_column))
            except (PortalError, StaleElementReferenceException):
                return False
            return bool(seen) and predicate(seen)

        self.wait_for(check, what, lambda: f"rows seen: {seen}")
        return seen

    def context_menu(self, element: WebElement, item: str) -> None:
        ActionChains(self.driver).context_click(element).perform()
        self.wait_for(lambda: [e for e in self.driver.find_elements(
            By.XPATH, f"//span[normalize-space(text())='{item}']") if e.is_displayed()], f"menu item {item!r}")
        self.click_button(item)

    def window_grid_rows(self, title_start: str) -> list[dict[str, str]]:
        """The rows of the grid in the window whose title starts with ``title_start`` (job details ...)."""
        script = """
var wanted = arguments[0];
var wins = Ext.ComponentQuery.query('window').filter(function (w) {
  return w.isVisible() && (w.title || '').indexOf(wanted) == 0; });
if (!wins.length) { return null; }
var grid = wins[0].down('gridpanel');
return grid ? {id: grid.getId(), title: wins[0].title,
               columns: grid.getVisibleColumns().map(function (c) { return c.dataIndex || c.text; })} : null;
"""
        found: dict = {}

        def check():
            nonlocal found
            found = self.driver.execute_script(script, title_start) or {}
            return bool(found) and bool(self.rows(Grid(**found)))

        self.wait_for(check, f"a window {title_start!r} with rows")
        self.window_grid = Grid(**found)
        return self.rows(self.window_grid)

    def group_titles(self, grid: Grid) -> list[str]:
        return [(title.get_attribute("textContent") or "").strip()
                for title in self.driver.find_elements(By.CSS_SELECTOR, f"#{grid.id} .x-grid-group-title")]

    def grouped_rows(self, grid: Grid, column: str) -> dict[str, list[str]]:
        """{group title without its "(n Items)": the ``column`` cell of each row shown below it} of a grouped grid
        (the File Catalog groups files by directory; a group's header is drawn in the row item of its first row)."""
        index = grid.columns.index(column)
        groups: dict[str, list[str]] = {}
        title = None
        for item in self.driver.find_elements(By.CSS_SELECTOR, f"#{grid.id} table.x-grid-item"):
            headers = item.find_elements(By.CSS_SELECTOR, ".x-grid-group-title")
            if headers:
                title = re.sub(r" \(\d+ Items?\)$", "", (headers[0].get_attribute("textContent") or "").strip())
                groups.setdefault(title, [])
            cells = item.find_elements(By.CSS_SELECTOR, "td.x-grid-cell")
            if cells and title is not None and len(cells) > index:
                groups[title].append((cells[index].get_attribute("textContent") or "").strip())
        return groups

    def expand_groups(self, grid: Grid) -> None:
        """Open the collapsed groups of a grouped grid (the File Catalog groups files by directory)."""
        for _ in range(100):  # each click re-renders the grid: look the headers up again every time
            try:
                collapsed = [header for header in self.driver.find_elements(
                    By.CSS_SELECTOR, f"#{grid.id} .x-grid-group-hd-collapsed") if header.is_displayed()]
                if not collapsed:
                    return
                collapsed[0].click()
            except (StaleElementReferenceException, ElementClickInterceptedException):
                time.sleep(0.2)  # re-rendered under the click, or still loading (its mask on top): look again

    # -- the File Catalog's directory tree and metadata query
    _CATALOG_TREE = """
var trees = Ext.ComponentQuery.query('treepanel').filter(function (t) {
  var proxy = t.getStore().getProxy();
  return t.isVisible(true) && proxy && (proxy.url || '').indexOf('getSubnodeFiles') >= 0; });
return trees.length ? trees[0].getId() : null;
"""

    def _catalog_tree_rows(self) -> list[WebElement]:
        tree_id = self.driver.execute_script(self._CATALOG_TREE)
        if not tree_id:
            raise PortalError("no File Catalog directory tree on the page")
        return self.driver.find_elements(By.CSS_SELECTOR, f"#{tree_id} table.x-grid-item")

    def tree_nodes(self) -> list[str]:
        return [row.find_element(By.CSS_SELECTOR, ".x-tree-node-text").text.strip()
                for row in self._catalog_tree_rows()]

    def _tree_row(self, name: str) -> WebElement:
        for row in self._catalog_tree_rows():
            if row.find_element(By.CSS_SELECTOR, ".x-tree-node-text").text.strip() == name:
                return row
        raise PortalError(f"no directory {name!r} in the tree: {self.tree_nodes()}")

    def expand_tree_node(self, name: str) -> None:
        self.wait_for(lambda: name in self.tree_nodes(), f"directory {name!r} in the tree",
                      lambda: f"tree: {self.tree_nodes()}")
        self._tree_row(name).find_element(By.CSS_SELECTOR, ".x-tree-expander").click()

    def start_query_from(self, name: str) -> None:
        """The tree's "Set as starting path" on directory ``name``."""
        self.context_menu(self._tree_row(name).find_element(By.CSS_SELECTOR, ".x-tree-node-text"),
                          "Set as starting path")

    def choose_metadata_value(self, field: str, value: str) -> None:
        """Click ``field`` in the Directory Metadata list, open its drop-down and pick ``value``."""
        self.click_row("Name", field)
        box_id = self.wait_for(lambda: self.driver.execute_script(
            "var wanted = arguments[0];"
            "var blocks = Ext.ComponentQuery.query('container').filter(function (c) {"
            " return c.fieldName == wanted && c.isVisible(true); });"
            "return blocks.length ? blocks[blocks.length - 1].items.getAt(2).getId() : null;", field),
            f"the drop-down of {field!r}")

        polls = 0

        def value_in_list():
            nonlocal polls
            shown = [i for i in self.driver.find_elements(By.CSS_SELECTOR, "li.x-boundlist-item") if i.is_displayed()]
            if not shown and polls % 6 == 0:
                # not open yet, or opened before the page had the field's values (its getQueryData): every 3 s,
                # open it again
                self.driver.execute_script("Ext.getCmp(arguments[0]).collapse();", box_id)
                polls += 1
                self.driver.find_element(By.CSS_SELECTOR, f"#{box_id} .x-form-trigger").click()
                return None
            polls += 1
            return [i for i in shown if i.text.strip() == value]

        items = self.wait_for(value_in_list, f"{value!r} among the values of {field!r}",
                              lambda: "values: " + str([i.text for i in self.driver.find_elements(
                                  By.CSS_SELECTOR, "li.x-boundlist-item") if i.is_displayed()]))
        items[0].click()
        # leave the field, as a click elsewhere does: the page takes the next field only once every field lost
        # its focus (then it asks getQueryData for the values still compatible)
        self.driver.execute_script("var box = Ext.getCmp(arguments[0]); box.collapse(); box.blur();", box_id)

    def maximize_window_of(self, grid: Grid) -> None:
        self.driver.execute_script("Ext.getCmp(arguments[0]).up('window').maximize();", grid.id)
        ActionChains(self.driver).move_by_offset(0, 0).perform()

    def screenshot(self, name: str, fit: Grid | None = None) -> Path:
        """The page as a PNG in the test results; the columns of grid ``fit`` first made as wide as their contents."""
        if fit is not None:
            self.driver.execute_script(
                "Ext.getCmp(arguments[0]).getVisibleColumns().forEach(function (c) {"
                " if (c.autoSize && c.dataIndex) { c.autoSize(); } });", fit.id)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def wait_for(self, check, what: str, details=None, timeout: float = PAGE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = check()
            except (JavascriptException, StaleElementReferenceException, ElementClickInterceptedException):
                value = None  # the page is redrawing, or loading under its mask: look again
            if value:
                return value
            time.sleep(0.5)
        shot = self.screenshot("timeout-" + "".join(c if c.isalnum() else "-" for c in what)[:60])
        raise PortalError(f"{what}: not on the page after {timeout:.0f} s (screenshot {shot})"
                          + (f"; {details()}" if details else ""))


def quit_quietly(driver: webdriver.Chrome) -> None:
    try:
        driver.quit()
    except WebDriverException:
        pass
