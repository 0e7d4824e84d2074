# The image the KubeRay manifests run (configs/cluster/*.yaml `image`): Ray 2.60, TensorFlow and this project,
# with no model inside; replicas fetch their model from HDFS when they start. Not built in this repository's CI
# (no Docker engine there).
FROM rayproject/ray:2.60.0-py311

USER root
# Kerberos for HDFS clusters that use it (hdfs-native loads libgssapi_krb5 at run time).
RUN apt-get update && apt-get install -y --no-install-recommends libgssapi-krb5-2 && rm -rf /var/lib/apt/lists/*
USER ray

WORKDIR /home/ray/travel-recsys
COPY --chown=ray:users requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users recsys ./recsys
COPY --chown=ray:users training ./training
COPY --chown=ray:users batch ./batch
COPY --chown=ray:users serve_apps ./serve_apps
COPY --chown=ray:users cluster ./cluster
COPY --chown=ray:users configs ./configs
RUN pip install --no-cache-dir --no-deps -e .
