# syntax=docker/dockerfile:1
#
# One image recipe for every Sluice process (API, control worker, inference workers, migrations).
# The repository runs TypeScript directly with tsx: there is no build step, so the image carries the
# sources and node_modules (dev dependencies included, since tsx is one) and each service picks its
# npm script as its command.
#
# Targets:
#   runtime (default)  API, control worker, CPU inference workers, migrations
#   gpu                runtime + the CUDA runtime libraries node-llama-cpp's prebuilt CUDA binaries
#                      load (libcudart, libcublas). The driver itself (libcuda) comes from the host
#                      through the NVIDIA Container Toolkit. x86_64 only.

ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS base
# package-lock.json and package.json's "allowScripts" policy are written by npm 11: use the same
# major so `npm ci` installs exactly what developers get and runs only the allowed install scripts.
ARG NPM_VERSION=11.19.1
RUN npm install --global "npm@${NPM_VERSION}" && npm cache clean --force
# Two glibc malloc arenas instead of 8 per core: the many threads of a Sluice process (libuv, V8,
# the Temporal core's runtime, workflow threads, llama.cpp) otherwise each fill their own arena,
# and RSS crept up ~4 MiB/min with a flat JS heap in the 10-minute soak (BENCHMARKS.md).
ENV NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    MALLOC_ARENA_MAX=2
WORKDIR /app
# SLUICE_DATA_DIR lives here; a named volume mounted on it inherits the node user's ownership.
RUN mkdir -p /data && chown node:node /data

# ---------------------------------------------------------------------------------------------
FROM base AS deps
COPY package.json package-lock.json ./
RUN npm ci && npm cache clean --force

# ---------------------------------------------------------------------------------------------
FROM base AS gpu
# CUDA major.minor of the runtime libraries. node-llama-cpp's primary CUDA binary links CUDA 13
# (host driver >= 580); build with --build-arg CUDA_VERSION=12.8 on hosts with an older driver, and
# node-llama-cpp falls back to its CUDA 12 binary.
ARG CUDA_VERSION=13.0
ARG CUDA_REPO=https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64
RUN set -eux; \
    cuda_pkg="$(echo "${CUDA_VERSION}" | tr . -)"; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    curl -fsSL -o /tmp/cuda-keyring.deb "${CUDA_REPO}/cuda-keyring_1.1-1_all.deb"; \
    dpkg -i /tmp/cuda-keyring.deb; \
    rm /tmp/cuda-keyring.deb; \
    apt-get update; \
    apt-get install -y --no-install-recommends "cuda-cudart-${cuda_pkg}" "libcublas-${cuda_pkg}"; \
    echo "/usr/local/cuda-${CUDA_VERSION}/targets/x86_64-linux/lib" > /etc/ld.so.conf.d/sluice-cuda.conf; \
    ldconfig; \
    apt-get purge -y --auto-remove curl; \
    rm -rf /var/lib/apt/lists/*
# What the NVIDIA Container Toolkit must inject into the container.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=deps /app/node_modules ./node_modules
COPY . .
USER node
ENV NODE_ENV=production \
    SLUICE_DATA_DIR=/data
CMD ["npm", "run", "worker:inference"]

# ---------------------------------------------------------------------------------------------
FROM base AS runtime
COPY --from=deps /app/node_modules ./node_modules
COPY . .
USER node
ENV NODE_ENV=production \
    SLUICE_DATA_DIR=/data \
    PORT=8080
# 8080: the API; 9464: the metrics listener (SLUICE_METRICS_PORT), for the compose network only.
EXPOSE 8080 9464
CMD ["npm", "run", "api"]
