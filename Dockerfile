# syntax=docker/dockerfile:1
# One image for every process of the system; the command chooses which (see docker-compose.yml):
#   clinic serve intake | clinic serve referral | clinic worker intake | clinic worker referral
#   clinic migrate (one-shot, before the services start) | clinic keys create ...
# Dependencies come from requirements.lock.txt: exact versions with hashes, no index address
# (regenerate it with scripts/lock-requirements.sh). No dev tools are installed.

# -- build: a virtual environment with the pinned dependencies and the project ---------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/clinic
COPY requirements.lock.txt requirements.build.txt /tmp/
RUN /opt/clinic/bin/pip install --require-hashes --no-deps --only-binary=:all: -r /tmp/requirements.lock.txt \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r /tmp/requirements.build.txt
COPY pyproject.toml README.md /src/
COPY services /src/services
COPY migrations /src/migrations
# The project alone (its dependencies are already pinned above), built by the pinned hatchling.
RUN /opt/build/bin/python -m pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels /src \
 && /opt/clinic/bin/pip install --no-deps --no-index /tmp/wheels/*.whl

# -- runtime: the environment alone, run by an unprivileged user -----------------------------
FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 clinic \
 && useradd --system --uid 10001 --gid clinic --home-dir /home/clinic --create-home \
      --shell /usr/sbin/nologin clinic
COPY --from=build /opt/clinic /opt/clinic
ENV PATH=/opt/clinic/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CLINIC_HOST=0.0.0.0 \
    CLINIC_LOG_FORMAT=json
USER clinic
WORKDIR /home/clinic
EXPOSE 8001 8002
# One service per container; never `clinic up` (that runs an embedded database on loopback).
CMD ["clinic", "serve", "intake"]
