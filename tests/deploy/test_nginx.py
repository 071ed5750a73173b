"""`nginx -t` accepts the rendered site, inside a minimal nginx.conf that uses temporary paths."""

import subprocess
from pathlib import Path

import pytest

from tests.deploy.installer import DOMAIN, INSTALL_DIR, installed, tool


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={DOMAIN}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def nginx_test(site_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """nginx -t on a site file, its certificates and log files swapped for temporary ones."""
    nginx = tool("nginx")
    if not nginx:
        pytest.skip("nginx is not installed (scripts/ensure_deploy_tools.sh installs nginx-light as root)")
    if not tool("openssl"):
        pytest.skip("openssl is not installed: no certificate for the TLS server block")
    cert, key = self_signed_certificate(tmp_path)
    site_text = site_text.replace(f"/etc/letsencrypt/live/{DOMAIN}/fullchain.pem", str(cert))
    site_text = site_text.replace(f"/etc/letsencrypt/live/{DOMAIN}/privkey.pem", str(key))
    site_text = site_text.replace("/var/log/nginx/", f"{tmp_path}/")
    site = tmp_path / "site.conf"
    site.write_text(site_text)
    conf = tmp_path / "nginx.conf"
    temp = {name: tmp_path / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n"
        f"    access_log {tmp_path}/access.log;\n"
        + "".join(f"    {name}_temp_path {path};\n" for name, path in temp.items())
        + f"    include {site};\n}}\n"
    )
    return subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", f"{tmp_path}/error.log"],
        capture_output=True,
        text=True,
    )


def test_nginx_accepts_the_rendered_site(rendered, tmp_path):
    site = installed(rendered, "/etc/nginx/sites-available/messaging-cron").read_text()
    assert f"alias {INSTALL_DIR}/staticfiles/;" in site
    result = nginx_test(site, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def test_nginx_t_would_catch_a_broken_site(rendered, tmp_path):
    site = installed(rendered, "/etc/nginx/sites-available/messaging-cron").read_text()
    result = nginx_test(site.replace("proxy_read_timeout 60s;", "proxy_read_timeout 60s"), tmp_path)
    assert result.returncode != 0
