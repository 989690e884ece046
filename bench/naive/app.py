"""The tutorial FastAPI front end: ``uvicorn bench.naive.app:app``.

POST sends a Celery task and returns its id; GET reports ``AsyncResult(id)``'s state and result.
Clients poll GET until the state is ``SUCCESS``.
"""

from __future__ import annotations

import base64
from typing import Annotated

from celery.result import AsyncResult
from fastapi import FastAPI, File, UploadFile
from pydantic import BaseModel

from bench.naive.tasks import app as celery_app
from bench.naive.tasks import predict_digit, predict_iris

app = FastAPI(title="naive FastAPI + Celery")


class IrisIn(BaseModel):
    features: list[float]


@app.post("/predict/iris")
def submit_iris(body: IrisIn) -> dict[str, object]:
    task = predict_iris.delay(body.features)
    return {"task_id": task.id}


@app.post("/predict/digits")
def submit_digit(file: Annotated[UploadFile, File()]) -> dict[str, object]:
    task = predict_digit.delay(base64.b64encode(file.file.read()).decode())
    return {"task_id": task.id}


@app.get("/result/{task_id}")
def result(task_id: str) -> dict[str, object]:
    task = AsyncResult(task_id, app=celery_app)
    if task.state == "SUCCESS":
        return {"task_id": task_id, "status": task.state, "result": task.result}
    return {"task_id": task_id, "status": task.state, "result": None}
