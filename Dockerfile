FROM python:3.11-slim
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY . .
RUN uv pip install --system --no-cache .
EXPOSE 8001 8002
CMD ["clinic", "up"]
