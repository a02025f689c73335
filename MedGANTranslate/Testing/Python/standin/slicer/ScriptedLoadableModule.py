"""Stand-in for ``slicer.ScriptedLoadableModule`` (same classes and signatures as Slicer 5.8.1; slicer-core does not
have it, since it needs Qt). The parameter node is a real vtkMRMLScriptedModuleNode, made as Slicer makes it."""
from __future__ import annotations

import logging
import os
import sys
import unittest

import qt

import slicer

__all__ = ["ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest"]


class ScriptedLoadableModule:
    def __init__(self, parent) -> None:
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = ["Andras Lasso (PerkLab, Queen's University), Steve Pieper (Isomics)"]
        parent.helpText = ""
        parent.acknowledgementText = ""
        slicer.selfTests[self.moduleName] = self.runTest

    def resourcePath(self, filename):
        return os.path.join(os.path.dirname(slicer.util.modulePath(self.moduleName)), "Resources", filename)

    def getDefaultModuleDocumentationLink(self, docPage=None):
        return '<p>For more information see the <a href="https://slicer.readthedocs.io/">documentation</a>.</p>'

    def runTest(self, msec=100, **kwargs):
        module = sys.modules[self.__module__]
        testCaseClass = getattr(module, self.moduleName + "Test", None)
        if testCaseClass is None:
            raise AssertionError(f"No test case class found in {self.moduleName}")
        testCase = testCaseClass()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[:-6]
        self.developerMode = False
        if not parent:
            self.parent = slicer.qMRMLWidget()
            self.parent.setLayout(qt.QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if not parent:
            self.setup()
            self.parent.show()

    def resourcePath(self, filename):
        return os.path.join(os.path.dirname(slicer.util.modulePath(self.moduleName)), "Resources", filename)

    def setup(self) -> None:
        pass

    def cleanup(self) -> None:
        pass

    def onReload(self) -> None:
        logging.info("Reload is not available in the stand-in")

    def onTest(self, **kwargs) -> None:
        slicer.selfTests[self.moduleName](**kwargs)

    def onReloadAndTest(self, **kwargs) -> None:
        self.onTest(**kwargs)


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None) -> None:
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-5]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is not None:
            if node.GetAttribute("ModuleName") != self.moduleName:
                node.SetAttribute("ModuleName", self.moduleName)
            return node
        return slicer.mrmlScene.AddNode(self.createParameterNode())

    def getAllParameterNodes(self):
        return [n for n in slicer.util.getNodesByClass("vtkMRMLScriptedModuleNode") if n.GetAttribute("ModuleName") == self.moduleName]

    def createParameterNode(self):
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.moduleTestNames = [name for name in dir(self) if "test" in name and callable(getattr(self, name))]
        self.enableScreenshots = False
        self.screenshotScaleFactor = 1.0

    def delayDisplay(self, message, requestedDelay=None, msec=None) -> None:
        logging.info(message)
        slicer.app.processEvents()

    def takeScreenshot(self, name, description, type=-1) -> None:
        self.delayDisplay(description)

    def setUp(self) -> None:
        pass

    def tearDown(self) -> None:
        pass

    def runTest(self) -> None:
        self.setUpClass()
        for name in self.moduleTestNames:
            self.setUp()
            getattr(self, name)()
            self.tearDown()
        self.tearDownClass()
