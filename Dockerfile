# Flow-OPD Studio: the web app on the built-in tiny model (CPU), or on a GPU with --gpus all.
# On x86_64, PyPI's torch==2.13.0 is the CUDA build, so the same image trains on an NVIDIA GPU.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    FLOWOPD_HOME=/data

# libgomp1: OpenMP runtime of onnxruntime (OCR reward) and torch.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY pyproject.toml README.md app.py ./
COPY flowopd ./flowopd
COPY flowopd_studio ./flowopd_studio
COPY ui ./ui
COPY storage ./storage
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 studio \
    && mkdir -p /data && chown 1000 /data

USER 1000
VOLUME ["/data"]
EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
